import { parseArgs } from 'node:util';
import { envTwin, SERVE_FLAGS, type FlagSpec } from './config/quick-mode.js';

/** A usage error: the CLI prints it and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export const COMMANDS = ['serve', 'demo'] as const;
export type Command = (typeof COMMANDS)[number];

export interface ParsedCli {
  command: Command;
  help: boolean;
  version: boolean;
  flags: Record<string, string | undefined>;
}

const DEMO_FLAGS: readonly FlagSpec[] = [
  { name: 'listen', value: '[HOST:]PORT', description: 'data plane address (default 127.0.0.1:8080)' },
  { name: 'admin', value: '[HOST:]PORT', description: 'admin address (default 127.0.0.1:9464)' },
  { name: 'log-level', value: 'LEVEL', description: 'fatal|error|warn|info|debug|trace|silent (default info)' },
];

export function flagsOf(command: Command): readonly FlagSpec[] {
  return command === 'demo' ? DEMO_FLAGS : SERVE_FLAGS;
}

export function parseCli(argv: readonly string[]): ParsedCli {
  const first = argv[0];
  const command: Command = first !== undefined && !first.startsWith('-') ? asCommand(first) : 'serve';
  const rest = first !== undefined && !first.startsWith('-') ? argv.slice(1) : argv;
  const specs = flagsOf(command);
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
  };
  for (const spec of specs) options[spec.name] = { type: 'string' };
  let parsed;
  try {
    parsed = parseArgs({ args: [...rest], options, allowPositionals: false, strict: true });
  } catch (error) {
    throw new UsageError(withSuggestion((error as Error).message, specs));
  }
  const flags: Record<string, string | undefined> = {};
  for (const spec of specs) {
    const value = parsed.values[spec.name];
    flags[spec.name] = typeof value === 'string' ? value : undefined;
  }
  return { command, help: parsed.values.help === true, version: parsed.values.version === true, flags };
}

function asCommand(word: string): Command {
  if ((COMMANDS as readonly string[]).includes(word)) return word as Command;
  throw new UsageError(`unknown command "${word}" (commands: ${COMMANDS.join(', ')})`);
}

/** "Unknown option '--tokne-url'" → adds "did you mean --token-url?" */
function withSuggestion(message: string, specs: readonly FlagSpec[]): string {
  const match = /'(--?[^']+)'/.exec(message);
  if (!match?.[1]) return message;
  const given = match[1].replace(/^-+/, '');
  const names = [...specs.map((spec) => spec.name), 'help', 'version'];
  const nearest = names
    .map((name) => ({ name, distance: editDistance(given, name) }))
    .sort((a, b) => a.distance - b.distance)[0];
  return nearest !== undefined && nearest.distance <= 3 ? `${message}; did you mean --${nearest.name}?` : message;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] ?? 0;
      row[j] = Math.min(current + 1, (row[j - 1] ?? 0) + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length] ?? 0;
}

export function helpText(command: Command, version: string): string {
  const lines = [
    `bearer-sidecar ${version}: a local authenticating reverse proxy`,
    '',
    'Usage:',
    '  bearer-sidecar [--config FILE] [flags]   serve (the default command)',
    '  bearer-sidecar demo [flags]              a demo token server and API with a sidecar in front',
    '  bearer-sidecar --help | --version',
    '',
    `Flags${command === 'demo' ? ' of demo' : ''} (each has an environment twin):`,
  ];
  for (const spec of flagsOf(command)) {
    const name = `--${spec.name}${spec.value ? ` ${spec.value}` : ''}`;
    lines.push(`  ${name.padEnd(34)} ${spec.description}  [${envTwin(spec.name)}]`);
  }
  lines.push(
    '',
    'The config file is --config FILE, else BEARER_SIDECAR_CONFIG, else quick mode (--upstream ...).',
    'A .env file in the working directory is loaded first; real environment variables win.',
    'Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or usage.',
  );
  return lines.join('\n');
}
