// Where a Node process's memory goes, over time: preload it into the sidecar, e.g.
//   npm run bench -- --only "small GET (" --node-options "--import ./bench/rss-timeline.mjs"
// and it appends one JSON line every RSS_TIMELINE_MS (default 50) ms to RSS_TIMELINE_OUT
// (default rss-timeline-PID.jsonl in the working directory): RSS split into private (anon) and
// file-backed pages (the node binary), V8's heap by space, and external memory (Buffers).
// A peak seen by `npm run bench` can then be traced to the part that grew (docs/performance.md "Memory").
import { appendFileSync, readFileSync } from 'node:fs';
import v8 from 'node:v8';

const out = process.env.RSS_TIMELINE_OUT ?? `rss-timeline-${process.pid}.jsonl`;
const everyMs = Number(process.env.RSS_TIMELINE_MS ?? 50);
const started = Date.now();
const mib = (bytes) => Math.round((bytes / 1048576) * 10) / 10;
const statusMib = (status, field) => mib(Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024);

setInterval(() => {
  const status = readFileSync('/proc/self/status', 'utf8');
  const usage = process.memoryUsage();
  const spaces = Object.fromEntries(
    v8.getHeapSpaceStatistics().map((space) => [space.space_name, mib(space.space_size)]),
  );
  const line = {
    ms: Date.now() - started,
    rss: mib(usage.rss),
    anon: statusMib(status, 'RssAnon'),
    file: statusMib(status, 'RssFile'),
    heapTotal: mib(usage.heapTotal),
    heapUsed: mib(usage.heapUsed),
    external: mib(usage.external),
    ...spaces,
  };
  appendFileSync(out, `${JSON.stringify(line)}\n`);
}, everyMs).unref();
