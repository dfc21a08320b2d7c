import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { adminAddressToCall } from '../../src/config/admin-address.js';

/*
 * The image's HEALTHCHECK must call the admin address the sidecar really uses (a changed admin
 * address in the config file or in BEARER_SIDECAR_ADMIN), not a fixed 127.0.0.1:9464.
 */

const dir = mkdtempSync(join(tmpdir(), 'bearer-sidecar-admin-address-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const absent = join(dir, 'absent.yaml');

function configFile(name: string, admin: string): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    [
      admin,
      'accounts:',
      '  api:',
      '    upstream: http://127.0.0.1:9',
      '    auth: { flow: oauth2, tokenUrl: "http://127.0.0.1:9/token", clientId: app, clientSecret: "${SECRET}" }',
    ].join('\n'),
  );
  return path;
}

describe('§6 admin endpoints: the image health check finds the admin port', () => {
  it('§6: with nothing set, the health check calls 127.0.0.1:9464', () => {
    expect(adminAddressToCall({}, absent)).toEqual({ host: '127.0.0.1', port: 9464 });
  });

  it('§6: BEARER_SIDECAR_ADMIN moves it (port alone, or host and port)', () => {
    expect(adminAddressToCall({ BEARER_SIDECAR_ADMIN: '9999' }, absent)).toEqual({ host: '127.0.0.1', port: 9999 });
    expect(adminAddressToCall({ BEARER_SIDECAR_ADMIN: '0.0.0.0:9998' }, absent)).toEqual({
      host: '127.0.0.1',
      port: 9998,
    });
  });

  it("§6: the config file's admin address is used, a wildcard host reached on loopback", () => {
    const file = configFile('wildcard.yaml', 'admin: { host: 0.0.0.0, port: 9997 }');
    expect(adminAddressToCall({ BEARER_SIDECAR_CONFIG: file, SECRET: 's3cret' }, absent)).toEqual({
      host: '127.0.0.1',
      port: 9997,
    });
    const imageFile = configFile('image.yaml', 'admin: { host: "::", port: 9996 }');
    expect(adminAddressToCall({ SECRET: 's3cret' }, imageFile)).toEqual({ host: '::1', port: 9996 });
  });

  it('§6: BEARER_SIDECAR_ADMIN wins over the file, as it does for serve', () => {
    const file = configFile('both.yaml', 'admin: { port: 9995 }');
    expect(
      adminAddressToCall({ BEARER_SIDECAR_CONFIG: file, SECRET: 's', BEARER_SIDECAR_ADMIN: '9994' }, absent),
    ).toEqual({ host: '127.0.0.1', port: 9994 });
  });

  it('§6: a config that does not load falls back to the variable or the default, never throws', () => {
    const file = configFile('broken.yaml', 'admin: { port: 9993 }\nnot: [valid');
    expect(adminAddressToCall({ BEARER_SIDECAR_CONFIG: file }, absent)).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(adminAddressToCall({ BEARER_SIDECAR_CONFIG: file, BEARER_SIDECAR_ADMIN: '9992' }, absent)).toEqual({
      host: '127.0.0.1',
      port: 9992,
    });
  });
});
