import { parseArgs } from 'node:util';
import {
  CONFIG_FLAG,
  envTwin,
  LOG_FLAGS,
  LOG_FORMAT_FLAG,
  LOG_LEVEL_FLAG,
  QUICK_MODE_FLAGS,
  SECRET_VARIABLES,
  SERVE_FLAGS,
  type FlagSpec,
} from './config/quick-mode.js';
import { SidecarError, messageOf } from './util/errors.js';
import { nearestName } from './util/nearest.js';

/** A usage error: the CLI prints it and exits 2. */
export class UsageError extends SidecarError {
  constructor(message: string) {
    super('BS_ERR_USAGE', message);
  }
}

export const COMMANDS = ['serve', 'check', 'authorize', 'demo'] as const;
export type Command = (typeof COMMANDS)[number];

export interface ParsedCli {
  command: Command;
  help: boolean;
  version: boolean;
  /** By flag name; boolean flags hold 'true' when given. Env twins are merged later (withEnvTwins). */
  flags: Record<string, string | undefined>;
  /** `authorize ACCOUNT`: the account name. */
  account?: string;
}

interface CommandSpec {
  usage: string;
  summary: string;
  flags: readonly FlagSpec[];
  /** The one positional argument the command takes, if any (authorize ACCOUNT). */
  positional?: string;
}

const ADDRESS_FLAGS = SERVE_FLAGS.filter((spec) => spec.name === 'listen' || spec.name === 'admin');

export const COMMAND_SPECS: Record<Command, CommandSpec> = {
  serve: {
    usage: 'bearer-sidecar [--config FILE] [flags]',
    summary: 'serve (the default command)',
    flags: SERVE_FLAGS,
  },
  check: {
    usage: 'bearer-sidecar check [--config FILE] [flags]',
    summary: 'validate the config, get or read one token per account, print a table; exit 0 when all are good',
    flags: [
      CONFIG_FLAG,
      { name: 'json', description: 'print the result as JSON (for scripts)', default: 'off, a table' },
      {
        name: 'login',
        description: 'ask the token endpoint even with a file/redis store (never spends a stored refresh token)',
        default: 'off, a file/redis store is only read',
      },
      { ...LOG_LEVEL_FLAG, default: 'warn' },
      LOG_FORMAT_FLAG,
      ...QUICK_MODE_FLAGS,
    ],
  },
  authorize: {
    usage: 'bearer-sidecar authorize ACCOUNT [--config FILE] [flags]',
    summary: 'one-time authorization_code bootstrap (PKCE, loopback redirect); stores the refresh token',
    positional: 'ACCOUNT',
    flags: [
      CONFIG_FLAG,
      {
        name: 'out',
        value: 'FILE',
        description: 'also write the refresh token to FILE (mode 0600), e.g. for refreshTokenFile',
        default: 'none',
      },
      {
        name: 'redirect-timeout',
        value: 'DURATION',
        description: 'how long to wait for the browser to come back',
        default: '5m',
      },
      { ...LOG_LEVEL_FLAG, default: 'warn' },
      LOG_FORMAT_FLAG,
    ],
  },
  demo: {
    usage: 'bearer-sidecar demo [flags]',
    summary: 'a demo token server and API with a sidecar in front',
    flags: [...ADDRESS_FLAGS, ...LOG_FLAGS],
  },
};

export function flagsOf(command: Command): readonly FlagSpec[] {
  return COMMAND_SPECS[command].flags;
}

/** The environment twins of every command's flags: BEARER_SIDECAR_* names the CLI reads (§2). */
export function allFlagVariables(): Set<string> {
  return new Set(COMMANDS.flatMap((command) => flagsOf(command).map((spec) => envTwin(spec.name))));
}

export function parseCli(argv: readonly string[]): ParsedCli {
  const first = argv[0];
  const named = first !== undefined && !first.startsWith('-');
  const command: Command = named ? asCommand(first) : 'serve';
  const rest = named ? argv.slice(1) : argv;
  const spec = COMMAND_SPECS[command];
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
  };
  for (const flag of spec.flags)
    options[flag.name] = { type: flag.value === undefined ? 'boolean' : 'string', multiple: flag.multiple === true };
  let parsed;
  try {
    parsed = parseArgs({ args: [...rest], options, allowPositionals: spec.positional !== undefined, strict: true });
  } catch (error) {
    throw new UsageError(withSuggestion(messageOf(error), command));
  }
  const flags: Record<string, string | undefined> = {};
  for (const flag of spec.flags) {
    const value = parsed.values[flag.name];
    // A repeated flag arrives as its environment twin would: the values joined by commas.
    flags[flag.name] = Array.isArray(value)
      ? value.join(',')
      : typeof value === 'string'
        ? value
        : value === true
          ? 'true'
          : undefined;
  }
  const help = parsed.values.help === true;
  const version = parsed.values.version === true;
  const result: ParsedCli = { command, help, version, flags };
  if (spec.positional !== undefined && !help && !version) {
    if (parsed.positionals.length !== 1) {
      throw new UsageError(
        `${command} takes one ${spec.positional} (${parsed.positionals.length === 0 ? 'none given' : `got ${parsed.positionals.join(' ')}`}): ${spec.usage}`,
      );
    }
    result.account = parsed.positionals[0];
  }
  return result;
}

function asCommand(word: string): Command {
  if ((COMMANDS as readonly string[]).includes(word)) return word as Command;
  const nearest = nearestName(word, COMMANDS);
  throw new UsageError(
    `unknown command "${word}"${nearest === undefined ? '' : `; did you mean ${nearest}?`} (commands: ${COMMANDS.join(', ')})`,
  );
}

/** "Unknown option '--tokne-url'" → adds "did you mean --token-url?", or names the command that has it. */
function withSuggestion(message: string, command: Command): string {
  const match = /'(--?[^']+)'/.exec(message);
  if (!match?.[1] || !message.startsWith('Unknown option')) return message;
  const given = match[1].replace(/^-+/, '');
  const secret = Object.values(SECRET_VARIABLES).find(({ cliFlag }) => cliFlag === given);
  if (secret !== undefined) {
    // Never echo the value: it is the secret.
    return `--${given}: a secret on the command line is visible to every user of this machine (ps); use --${secret.fileFlag} FILE or the environment variable ${secret.variable}`;
  }
  const names = [...flagsOf(command).map((spec) => spec.name), 'help', 'version'];
  const elsewhere = COMMANDS.filter((other) => other !== command && flagsOf(other).some((spec) => spec.name === given));
  if (elsewhere.length > 0) {
    const owners = elsewhere.map((other) => (other === 'serve' ? 'serve (the default command)' : other)).join(', ');
    const first = elsewhere[0] === 'serve' ? '' : `${elsewhere[0]} `;
    return `${message}: --${given} is a flag of ${owners}; see bearer-sidecar ${first}--help`;
  }
  const nearest = nearestName(given, names);
  return nearest === undefined
    ? `${message}; see bearer-sidecar ${command === 'serve' ? '' : `${command} `}--help`
    : `${message}; did you mean --${nearest}?`;
}

export function helpText(command: Command, version: string): string {
  const usageWidth = Math.max(...COMMANDS.map((name) => COMMAND_SPECS[name].usage.length));
  const lines = [
    `bearer-sidecar ${version}: a local authenticating reverse proxy`,
    '',
    'Usage:',
    ...COMMANDS.map((name) => `  ${COMMAND_SPECS[name].usage.padEnd(usageWidth)}   ${COMMAND_SPECS[name].summary}`),
    `  ${'bearer-sidecar COMMAND --help'.padEnd(usageWidth)}   the flags of a command`,
    '  bearer-sidecar --help | --version',
    '',
    `Flags of ${command === 'serve' ? 'serve' : command} (each has an environment twin; the flag wins):`,
  ];
  const specs = flagsOf(command);
  const nameWidth = Math.max(...specs.map((spec) => flagName(spec).length));
  for (const spec of specs) {
    const defaults = spec.default === undefined ? '' : ` (default: ${spec.default})`;
    lines.push(
      `  ${flagName(spec).padEnd(nameWidth)}  ${spec.description}${defaults}  [${envTwin(spec.name)}${spec.value === undefined ? '=1' : ''}]`,
    );
  }
  lines.push('', ...COMMAND_NOTES[command]);
  return lines.join('\n');
}

function flagName(spec: FlagSpec): string {
  return `--${spec.name}${spec.value === undefined ? '' : ` ${spec.value}`}`;
}

const CONFIG_NOTE = 'The config file is --config FILE, else BEARER_SIDECAR_CONFIG, else quick mode (--upstream ...).';
const ENV_NOTE = 'A .env file in the working directory is loaded first; real environment variables win.';
const SECRET_NOTE =
  'Secrets: the --...-file flags, or BEARER_SIDECAR_CLIENT_SECRET, _PASSWORD, _REFRESH_TOKEN (less safe: /proc/PID/environ, docker inspect).';

const COMMAND_NOTES: Record<Command, readonly string[]> = {
  serve: [
    CONFIG_NOTE,
    ENV_NOTE,
    SECRET_NOTE,
    'Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or usage.',
  ],
  check: [
    CONFIG_NOTE,
    ENV_NOTE,
    SECRET_NOTE,
    'With the memory store (or --login) each account asks its token endpoint once (a login; grant refresh_token',
    'only with --login and nothing stored). With a file or redis store the stored token is read and nothing is sent.',
    'Exit codes: 0 every account good, 1 a problem with an account, 2 bad configuration or usage.',
  ],
  authorize: [
    CONFIG_NOTE,
    ENV_NOTE,
    'Needs accounts.ACCOUNT.auth.flow oauth2 with authorizeUrl (and redirectPort, or a free port is used).',
    'Exit codes: 0 refresh token stored, 1 denied, timed out or rejected, 2 bad configuration or usage.',
  ],
  demo: [ENV_NOTE, 'Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage.'],
};
