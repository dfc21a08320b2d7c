import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { envTwin, withEnvTwins } from '../../src/config/quick-mode.js';
import type { OAuth2Auth } from '../../src/config/resolve.js';
import { readSecret } from '../../src/util/secret-source.js';
import { problemsOf } from '../helpers/config-problems.js';

/*
 * R5 and R6 at configuration time: every file the configuration names must be a regular file of
 * bounded size, and every secret must be non-empty; each problem is an exit-2 problem naming its path.
 */

let dir: string;
let socketServer: net.Server;
let socketPath: string;
const writers: ChildProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bearer-sidecar-untrusted-config-'));
  socketPath = join(dir, 'socket');
  socketServer = net.createServer();
  await new Promise<void>((resolve) => socketServer.listen(socketPath, resolve));
});

afterEach(() => {
  for (const writer of writers.splice(0)) writer.kill('SIGKILL');
});

afterAll(async () => {
  await new Promise<void>((resolve) => socketServer.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

let count = 0;
function fresh(name: string): string {
  count += 1;
  return join(dir, `${count}-${name}`);
}

function fileWith(content: string | Buffer): string {
  const file = fresh('file');
  writeFileSync(file, content, { mode: 0o600 });
  return file;
}

function fifo(): string {
  const file = fresh('fifo');
  execFileSync('mkfifo', [file]);
  return file;
}

/**
 * A FIFO with a process waiting to write `content` into it once. A reader that opens it gets the
 * content, then end of file; code that blocks on a FIFO (before R5) is released by this writer.
 */
function fifoWithWriter(content: string): string {
  const file = fifo();
  writers.push(spawn('sh', ['-c', `printf '%s' '${content}' > '${file}'`], { stdio: 'ignore' }));
  return file;
}

function bigFile(bytes: number): string {
  const file = fileWith('');
  truncateSync(file, bytes);
  return file;
}

function directory(): string {
  const path = fresh('dir');
  mkdirSync(path);
  return path;
}

const MIB = 1024 * 1024;
const OAUTH2 = { flow: 'oauth2', tokenUrl: 'https://auth.crm.example/token', clientId: 'my-app' } as const;
const SESSION = { flow: 'session', loginUrl: 'https://api.example.net/auth/login', username: 'fleet' } as const;

function oneAccount(auth: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { accounts: { crm: { upstream: 'https://api.crm.example/v2', auth, ...extra } } };
}

function parse(raw: unknown, env: NodeJS.ProcessEnv = {}) {
  return parseConfig(raw, { env });
}

const NOT_REGULAR: Array<{ what: string; make: () => string; message: (path: string) => string }> = [
  { what: 'a directory', make: directory, message: (path) => `${path} is a directory, not a regular file` },
  { what: 'a socket', make: () => socketPath, message: (path) => `${path} is a socket, not a regular file` },
  {
    what: 'a device (/dev/null)',
    make: () => '/dev/null',
    message: () => '/dev/null is a character device, not a regular file',
  },
  { what: 'over 1 MiB', make: () => bigFile(MIB + 1), message: (path) => `${path} is larger than 1 MiB` },
];

describe('R5: files named in the configuration are regular files of bounded size (exit 2)', () => {
  for (const field of ['clientSecretFile', 'passwordFile', 'refreshTokenFile'] as const) {
    for (const { what, make, message } of NOT_REGULAR) {
      it(`R5: auth.${field} that is ${what} is a problem naming its path`, () => {
        const path = make();
        const auth =
          field === 'passwordFile'
            ? { ...SESSION, passwordFile: path }
            : { ...OAUTH2, [field]: path, ...(field === 'refreshTokenFile' ? { grant: 'refresh_token' } : {}) };
        expect(problemsOf(() => parse(oneAccount(auth)))).toEqual([
          { path: `accounts.crm.auth.${field}`, message: message(path) },
        ]);
      });
    }
  }

  it('R5: a secret file that is a symlink to a regular file is followed (Kubernetes mounts secrets so)', async () => {
    const secret = randomBytes(12).toString('hex');
    const link = fresh('link');
    symlinkSync(fileWith(`${secret}\n`), link);
    const auth = parse(oneAccount({ ...OAUTH2, clientSecretFile: link })).accounts[0]?.auth as OAuth2Auth;
    if (auth.clientSecret === undefined) throw new Error('no client secret');
    expect((await readSecret(auth.clientSecret)).reveal()).toBe(secret);
  });

  it('R5: a secret file that is a pipe (--client-secret-file <(printf s3cret)) is read once at start-up and that value is kept', async () => {
    const secret = randomBytes(12).toString('hex');
    const pipe = fifoWithWriter(secret);
    const auth = parse(oneAccount({ ...OAUTH2, clientSecretFile: pipe })).accounts[0]?.auth as OAuth2Auth;
    if (auth.clientSecret === undefined) throw new Error('no client secret');
    // A pipe cannot be read twice: every login gets the value read at start-up.
    expect((await readSecret(auth.clientSecret)).reveal()).toBe(secret);
    expect((await readSecret(auth.clientSecret)).reveal()).toBe(secret);
  });

  it('R5: a secret file that is a FIFO nobody writes to is a problem naming its path; the wait for a writer is bounded', () => {
    const path = fifo();
    expect(problemsOf(() => parse(oneAccount({ ...OAUTH2, clientSecretFile: path })))).toEqual([
      {
        path: 'accounts.crm.auth.clientSecretFile',
        message: `${path} is a FIFO and nothing was written to it within 2 s`,
      },
    ]);
  });

  for (const { what, make, message } of [
    {
      what: 'a FIFO',
      make: () => fifoWithWriter('-----BEGIN CERTIFICATE-----'),
      message: (path: string) => `${path} is a FIFO, not a regular file`,
    },
    ...NOT_REGULAR,
  ]) {
    it(`R5: upstreamTls.caFile that is ${what} is a problem naming its path, and never blocks`, () => {
      const path = make();
      expect(
        problemsOf(() => parse(oneAccount({ ...OAUTH2, clientSecret: 'cs' }, { upstreamTls: { caFile: path } }))),
      ).toEqual([{ path: 'accounts.crm.upstreamTls.caFile', message: message(path) }]);
    });
  }

  it('R5: store.encryptionKeyFile that is a FIFO or over 1 MiB is a problem naming its path, and never blocks', () => {
    for (const [path, message] of [
      [
        fifoWithWriter('0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'),
        'is a FIFO, not a regular file',
      ],
      [bigFile(MIB + 1), 'is larger than 1 MiB'],
    ] as const) {
      const raw = {
        ...oneAccount({ ...OAUTH2, clientSecret: 'cs' }),
        store: { type: 'file', path: join(dir, 'state.json'), encryptionKeyFile: path },
      };
      expect(problemsOf(() => parse(raw))).toEqual([
        { path: 'store.encryptionKeyFile', message: `store encryption key file ${path} ${message}` },
      ]);
    }
  });

  for (const { what, make, message } of [
    { what: 'a FIFO', make: fifo, message: (path: string) => `${path} is a FIFO, not a regular file` },
    { what: 'a directory', make: directory, message: (path: string) => `${path} is a directory, not a regular file` },
    { what: 'a socket', make: () => socketPath, message: (path: string) => `${path} is a socket, not a regular file` },
    {
      what: 'a symlink (to a file of the same user)',
      make: () => {
        const link = fresh('state-link');
        symlinkSync(fileWith('{}'), link);
        return link;
      },
      message: (path: string) =>
        `${path} is a symbolic link: the state file is never read, written or chmod-ed through a link; set store.path to the file itself`,
    },
  ]) {
    it(`R5: store.path that is ${what} is a problem naming its path (input 9, 10)`, () => {
      const path = make();
      const raw = { ...oneAccount({ ...OAUTH2, clientSecret: 'cs' }), store: { type: 'file', path } };
      expect(problemsOf(() => parse(raw))).toEqual([{ path: 'store.path', message: message(path) }]);
    });
  }

  it('R5: store.path may name a file that does not exist yet, or a regular file', () => {
    for (const path of [fresh('state.json'), fileWith('{}')]) {
      expect(
        parse({ ...oneAccount({ ...OAUTH2, clientSecret: 'cs' }), store: { type: 'file', path } }).store,
      ).toMatchObject({ path });
    }
  });

  it('R5: a config file that is a FIFO or over 1 MiB is a problem at config, and never blocks', () => {
    const pipe = fifoWithWriter('accounts: {}');
    expect(problemsOf(() => loadConfig({ file: pipe, env: {} }))).toEqual([
      { path: 'config', message: `${pipe} is a FIFO, not a regular file` },
    ]);
    const big = bigFile(MIB + 1);
    expect(problemsOf(() => loadConfig({ file: big, env: {} }))).toEqual([
      { path: 'config', message: `${big} is larger than 1 MiB` },
    ]);
  });
});

describe('R6: an empty secret is a configuration problem (exit 2), naming its path', () => {
  const EMPTY_FILES = [
    { what: 'an empty file', content: '' },
    { what: 'a file of only newlines', content: '\n\r\n\n' },
  ];

  for (const { what, content } of EMPTY_FILES) {
    for (const field of ['clientSecretFile', 'passwordFile', 'refreshTokenFile'] as const) {
      it(`R6: auth.${field} that is ${what} is a problem naming its path`, () => {
        const path = fileWith(content);
        const auth =
          field === 'passwordFile'
            ? { ...SESSION, passwordFile: path }
            : { ...OAUTH2, [field]: path, ...(field === 'refreshTokenFile' ? { grant: 'refresh_token' } : {}) };
        expect(problemsOf(() => parse(oneAccount(auth)))).toEqual([
          { path: `accounts.crm.auth.${field}`, message: `${path} is empty` },
        ]);
      });
    }
  }

  for (const field of ['clientSecret', 'password', 'refreshToken'] as const) {
    it(`R6: auth.${field} that expands to nothing (\${VAR:-} with VAR unset) is a problem naming its path`, () => {
      const auth = field === 'password' ? { ...SESSION, password: '${UNSET:-}' } : { ...OAUTH2, [field]: '${UNSET:-}' };
      expect(problemsOf(() => parse(oneAccount(auth)))).toEqual([
        { path: `accounts.crm.auth.${field}`, message: 'is empty (an empty secret is never sent)' },
      ]);
    });
  }

  it('R6: oauth2 password grant with an empty password, and a literal "" client secret, are problems', () => {
    const problems = problemsOf(() =>
      parse(oneAccount({ ...OAUTH2, clientSecret: '', grant: 'password', username: 'u', password: '${EMPTY:-}' }), {
        EMPTY: '',
      }),
    );
    expect(problems.map((problem) => problem.path).sort()).toEqual([
      'accounts.crm.auth.clientSecret',
      'accounts.crm.auth.password',
    ]);
  });

  it('R6: quick mode: --client-secret-file, --password-file and --refresh-token-file naming an empty file are problems naming the flag and the path', () => {
    for (const [flag, extra] of [
      ['client-secret-file', {}],
      ['password-file', { grant: 'password', username: 'u' }],
      ['refresh-token-file', { grant: 'refresh_token' }],
    ] as const) {
      const path = fileWith('');
      const flags = {
        upstream: 'https://api.crm.example',
        'token-url': 'https://auth.crm.example/token',
        'client-id': 'x',
        [flag]: path,
        ...extra,
      };
      expect(problemsOf(() => loadConfig({ flags, env: {} }))).toEqual([
        { path: `--${flag} (${envTwin(flag)})`, message: `${path} is empty` },
      ]);
    }
  });

  it('R6: quick mode: an env twin (BEARER_SIDECAR_CLIENT_SECRET_FILE) naming an empty file is a problem too', () => {
    const path = fileWith('\n');
    const env = {
      BEARER_SIDECAR_UPSTREAM: 'https://api.crm.example',
      BEARER_SIDECAR_TOKEN_URL: 'https://auth.crm.example/token',
      BEARER_SIDECAR_CLIENT_ID: 'x',
      BEARER_SIDECAR_CLIENT_SECRET_FILE: path,
    };
    expect(problemsOf(() => loadConfig({ flags: withEnvTwins({}, env), env }))).toEqual([
      { path: '--client-secret-file (BEARER_SIDECAR_CLIENT_SECRET_FILE)', message: `${path} is empty` },
    ]);
  });
});
