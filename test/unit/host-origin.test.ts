import { describe, expect, it } from 'vitest';
import { HostOriginRules, type HostOriginSettings } from '../../src/proxy/host-origin.js';

const NAMES = { hostsSetting: 'inbound.hosts (or --host in quick mode)', originsSetting: 'inbound.origins' };

function rules(settings: Partial<HostOriginSettings> = {}): HostOriginRules {
  return new HostOriginRules({ hosts: [], origins: [], listenHosts: ['127.0.0.1'], ...settings }, NAMES);
}

describe('S1 Host rule', () => {
  it.each([
    'localhost',
    'localhost:8080',
    'LOCALHOST:8080',
    'localhost.',
    'localhost.:8080',
    'api.localhost',
    'a.b.LocalHost:1',
    '127.0.0.1',
    '127.0.0.1:8080',
    '10.1.2.3:80',
    '[::1]',
    '[::1]:8080',
    '[2001:db8::7]:443',
    '0.0.0.0:8080',
  ])('S1: a loopback name or an IP literal is accepted: %s', (host) => {
    expect(rules().hostProblem(host)).toBeUndefined();
  });

  it('S1: no Host at all (HTTP/1.0) is accepted', () => {
    expect(rules().hostProblem(undefined)).toBeUndefined();
  });

  it.each([
    'attacker.example',
    'attacker.example:8080',
    'evil.localhost.attacker.example',
    'localhost.attacker.example',
    '127.0.0.1.nip.io',
    '0x7f.1',
    '2130706433x',
    'localhostx',
    'xlocalhost',
    '[::1',
    '::1',
    '[::1]x',
    '[::1]:80:80',
    'a:b:c',
    'localhost:80:80',
    'localhost:http',
    'localhost\u0000',
    'local\thost',
    'localhost\r\nx: y',
    'localhost /x',
    'user@localhost',
    '',
    ' ',
    ':8080',
    '.',
  ])('S1: a Host that is neither loopback, an IP literal nor configured is refused: %j', (host) => {
    expect(rules().hostProblem(host)).toBeDefined();
  });

  it.each([
    'evil.com/.localhost',
    'a@b.localhost',
    'a%2e.localhost',
    'a..localhost',
    '-a.localhost',
    'a b.localhost',
    'a?x.localhost:80',
    'a/b.example',
  ])('S1: a Host that is not a valid name is refused, even under .localhost or in the hosts setting: %j', (host) => {
    const problem = rules({ hosts: ['a/b.example'] }).hostProblem(host);
    expect(problem).toMatch(/is not a valid host name/);
  });

  it('S1: a Host longer than any DNS name is refused, even under .localhost', () => {
    const shared = rules();
    expect(shared.hostProblem('x'.repeat(10_000))).toBeDefined();
    expect(shared.hostProblem(`${'a.'.repeat(5_000)}localhost`)).toBeDefined();
    expect(shared.hostProblem(`${'a.'.repeat(5_000)}localhost:8080`)).toBeDefined();
    expect(shared.hostProblem(`${'a.'.repeat(120)}localhost:8080`)).toBeUndefined();
  });

  it('S1: names in the hosts setting and the listen hosts are accepted, in any case, with or without a port', () => {
    const configured = rules({ hosts: ['Sidecar.Tools.svc', 'gw.'], listenHosts: ['my-laptop', '0.0.0.0'] });
    for (const host of [
      'sidecar.tools.svc',
      'SIDECAR.tools.svc:8080',
      'sidecar.tools.svc.',
      'gw',
      'gw.:1',
      'my-laptop',
    ])
      expect(configured.hostProblem(host)).toBeUndefined();
    for (const host of ['tools.svc', 'x.sidecar.tools.svc', 'my-laptop.attacker.example', 'gw..'])
      expect(configured.hostProblem(host)).toBeDefined();
  });

  it('S1: the refusal names the rule and the setting, and quotes the Host safely and briefly', () => {
    const message = rules().hostProblem(`attacker.example\u0001${'x'.repeat(500)}`) ?? '';
    expect(message).toContain('DNS rebinding');
    expect(message).toContain('inbound.hosts (or --host in quick mode)');
    expect(message).toContain('"attacker.example\\u0001');
    expect(message).not.toContain('\u0001');
    expect(message.length).toBeLessThan(400);
  });

  it('S1: a decision is the same the second time (cached) and a flood of distinct Hosts does not change it', () => {
    const shared = rules();
    expect(shared.hostProblem('attacker.example')).toBeDefined();
    for (let i = 0; i < 3_000; i += 1) shared.hostProblem(`h${i}.example`);
    expect(shared.hostProblem('attacker.example')).toBeDefined();
    expect(shared.hostProblem('localhost:1')).toBeUndefined();
  });
});

describe('S1 Origin rule', () => {
  it('S1: a request with no Origin and no cross-site Sec-Fetch-Site is accepted', () => {
    expect(rules().originProblem({})).toBeUndefined();
    expect(rules().originProblem({ 'sec-fetch-site': 'same-origin' })).toBeUndefined();
    expect(rules().originProblem({ 'sec-fetch-site': 'none' })).toBeUndefined();
  });

  it.each([
    [{ origin: 'https://attacker.example' }],
    [{ origin: 'null' }],
    [{ origin: '' }],
    [{ origin: 'http://localhost:8080' }],
    [{ 'sec-fetch-site': 'cross-site' }],
    [{ 'sec-fetch-site': 'same-site' }],
    [{ origin: 'https://attacker.example', 'sec-fetch-site': 'cross-site' }],
  ])('S1: a request from a web page is refused: %j', (headers) => {
    const message = rules().originProblem(headers) ?? '';
    expect(message).toContain('web pages');
    expect(message).toContain('inbound.origins');
  });

  it('S1: a configured origin is accepted whatever Sec-Fetch-Site says, compared without case or trailing slash', () => {
    const configured = rules({ origins: ['https://App.example/', 'http://127.0.0.1:3000'] });
    for (const origin of ['https://app.example', 'https://APP.example', 'https://app.example/'])
      expect(configured.originProblem({ origin, 'sec-fetch-site': 'cross-site' })).toBeUndefined();
    expect(
      configured.originProblem({ origin: 'http://127.0.0.1:3000', 'sec-fetch-site': 'same-site' }),
    ).toBeUndefined();
    for (const origin of [
      'http://app.example',
      'https://app.example:8443',
      'https://app.example.attacker.example',
      'null',
    ])
      expect(configured.originProblem({ origin })).toBeDefined();
  });

  it('S1: a configured origin with its default port written out matches what a browser sends', () => {
    const configured = rules({ origins: ['https://app.example:443', 'http://b.example:80'] });
    expect(configured.originProblem({ origin: 'https://app.example' })).toBeUndefined();
    expect(configured.originProblem({ origin: 'http://b.example' })).toBeUndefined();
  });

  it('S1: problem() applies the Host rule first, then the Origin rule', () => {
    const both = rules().problem({ host: 'attacker.example', origin: 'https://attacker.example' }) ?? '';
    expect(both).toContain('DNS rebinding');
    expect(rules().problem({ host: 'localhost:8080', origin: 'https://attacker.example' })).toContain('web pages');
    expect(rules().problem({ host: 'localhost:8080' })).toBeUndefined();
  });
});
