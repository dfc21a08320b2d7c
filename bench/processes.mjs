// Processes of the bench scripts (bench/run.mjs, bench/compare-builds.mjs): where they run, what
// they print, what CPU they used, and that none is left running when the script ends.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

/** Whether processes can be pinned: the load generator and the upstream on core 0, the proxies on core 1. */
export const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0 && cpus().length >= 2;

/** Every process started here: killed when the script exits, even on a crash, so none is left running. */
const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/**
 * Starts `command` with stdout read as JSON lines; `firstLine(match)` resolves with the first line
 * (already seen or still to come) that matches, and rejects if the process exits first.
 * `fullGcs` counts the full mark-compact collections V8's `--trace-gc` reported (0 without it).
 */
export function startProcess(command, argv, env = {}) {
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const proc = { child, firstLine: undefined, fullGcs: 0 };
  const lines = [];
  const waiters = new Set();
  let partial = '';
  child.stdout.on('data', (chunk) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      if (line.startsWith('{')) lines.push(JSON.parse(line));
      // --trace-gc's lines (bench/run.mjs --trace-gc): full collections are counted, the rest dropped.
      else if (/ms: Mark-Compact/.test(line)) proc.fullGcs++;
    }
    for (const check of waiters) check();
  });
  const firstLine = (match) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const found = lines.find(match);
        if (found === undefined) return;
        waiters.delete(check);
        resolve(found);
      };
      waiters.add(check);
      child.on('exit', (code) => reject(new Error(`${command} exited (${code})`)));
      check();
    });
  proc.firstLine = firstLine;
  return proc;
}

/** A Node process on the proxy's core (core 1, when taskset can pin), where every measured proxy runs. */
export function startOnProxyCore(argv, env = {}) {
  return hasTaskset
    ? startProcess('taskset', ['-c', '1', process.execPath, ...argv], env)
    : startProcess(process.execPath, argv, env);
}

/**
 * Runs `main` with this process (the load generator) pinned to core 0: the script starts itself
 * again under taskset and exits with its code. Without taskset, `main` runs as it is.
 */
export async function onLoadCore(scriptUrl, args, main) {
  if (!hasTaskset || process.env.BENCH_PINNED === '1') return main();
  const { fileURLToPath } = await import('node:url');
  const child = spawn('taskset', ['-c', '0', process.execPath, fileURLToPath(scriptUrl), ...args], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_PINNED: '1' },
  });
  child.on('exit', (code) => process.exit(code ?? 1));
}

/** Clock ticks per second of /proc/PID/stat's CPU times (USER_HZ; 100 on Linux). */
const TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/**
 * CPU seconds (user + system) a process has used so far. CPU time per request is the bench's
 * steadiest figure on a busy machine: others' load lowers a proxy's rps, hardly its cost per request.
 */
export function cpuSeconds(pid) {
  // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}
