// How `npm run bench` shows a run: every pass, the spread of each row, and each goal with its
// verdict. A row whose spread is over NOISY_SPREAD gets "noisy" instead of a verdict: a figure that
// moves that much between passes cannot say whether a goal is met.

/** (max - min) / median of a side's rps over the passes above which a row is called noisy. */
export const NOISY_SPREAD = 0.25;

/** The goals of issue 24, in the order they are printed. */
const GOALS = {
  floorRatio: 0.92,
  uploadRatio: 0.6,
  rssOverFloorMiB: 15,
  addedP99Ms: 1,
  expiryTokenRequests: 1,
  expiryLastAnswerMs: 600,
  /** E4 (--dpop): the DPoP account's small GETs against the bearer account's, same run, same load. */
  dpopRatio: 0.9,
};

/** min, median and max of numbers. */
export function spreadOf(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const min = sorted[0];
  const max = sorted.at(-1);
  return { min, median, max, relative: median > 0 ? (max - min) / median : 0 };
}

/** True when any of `sides` moved more than NOISY_SPREAD between passes in this row. */
function noisy(row, sides) {
  // A steady-rate row's figure is its p99 (every side sends the same rps).
  const figure = (sample) => (row.latencyOnly ? sample.p99 : sample.rps);
  return sides.some((side) => spreadOf(row.passes[side].map(figure)).relative > NOISY_SPREAD);
}

const pct = (value) => `${(value * 100).toFixed(0)}%`;

/** Prints the run: header, the table of medians, each pass, the spreads, the goals. */
export function print(report) {
  const { machine } = report;
  console.log(
    `\nbearer-sidecar bench, ${report.date}: ${machine.cores} cores (${machine.model}), node ${machine.node}, ${machine.pinned ? 'load+upstream on core 0, proxies on core 1' : 'not pinned'}`,
  );
  console.log(
    `${report.passes} interleaved passes of ${report.durationSeconds} s, 50 connections (10 for uploads); medians`,
  );
  if (report.smoke) console.log('--smoke: a check that the bench works; its figures mean nothing');
  printTable(report);
  printRelative(report);
  printPasses(report);
  printCpu(report);
  printFullGcs(report);
  printNotes(report);
  printGoals(report);
}

function printTable(report) {
  const extras = report.extraSides;
  console.log(
    `scenario                 direct rps  sidecar rps  ratio   p50 direct/sidecar  p99 direct/sidecar  added p99  RSS MiB${extras.map((side) => ` | ${side.padStart(8)} rps  ratio  added p99  RSS MiB`).join('')}`,
  );
  for (const row of report.rows) {
    const others = extras.map(
      (side) =>
        ` | ${row[side].rps.toFixed(0).padStart(12)}  ${row.latencyOnly ? '  -  ' : `${row[`${side}Ratio`].toFixed(2)}x`}  ${row[`${side}AddedP99`].toFixed(2).padStart(6)} ms  ${row.rssPeakMiB[side].toFixed(0).padStart(7)}`,
    );
    console.log(
      `${row.scenario.padEnd(24)} ${row.direct.rps.toFixed(0).padStart(10)}  ${row.sidecar.rps.toFixed(0).padStart(11)}  ${row.latencyOnly ? '  -  ' : `${row.ratio.toFixed(2)}x`}   ${`${row.direct.p50} / ${row.sidecar.p50} ms`.padStart(18)}  ${`${row.direct.p99} / ${row.sidecar.p99} ms`.padStart(18)}  ${row.addedP99.toFixed(2).padStart(6)} ms  ${row.rssPeakMiB.sidecar.toFixed(0).padStart(7)}${others.join('')}`,
    );
  }
}

/** The sidecar's rps over each other proxy's (the floor, nginx, HAProxy, a baseline), per row. */
function printRelative(report) {
  if (report.extraSides.length === 0) return;
  console.log('\nsidecar rps / other proxy rps:');
  for (const row of report.rows.filter((candidate) => !candidate.latencyOnly)) {
    const parts = report.extraSides.map((side) => `/ ${side} ${(row.sidecar.rps / row[side].rps).toFixed(2)}`);
    console.log(`  ${row.scenario.padEnd(24)} ${parts.join('   ')}`);
  }
}

/** Every pass's rps per side, and the spread (min-median-max) of each row and side. */
function printPasses(report) {
  console.log('\nper pass (rps; p99 ms for the steady-rate row) and spread min-median-max:');
  for (const row of report.rows) {
    const key = row.latencyOnly ? 'p99' : 'rps';
    const parts = Object.entries(row.passes).map(([side, samples]) => {
      const values = samples.map((sample) => sample[key]);
      const { min, median, max, relative } = spreadOf(values);
      const shown = values.map((value) => (key === 'rps' ? value.toFixed(0) : value.toFixed(2)));
      const mark = !row.latencyOnly && relative > NOISY_SPREAD ? ' NOISY' : '';
      return `${side} [${shown.join(', ')}] ${fmt(min)}-${fmt(median)}-${fmt(max)} (${pct(relative)}${mark})`;
    });
    console.log(`  ${row.scenario}: ${parts.join('; ')}`);
  }
}

/** The throughput rows, and the sides whose passes carry `field` (the Node sides, for CPU and GC counts). */
function sidesWith(report, field) {
  const rows = report.rows.filter((row) => !row.latencyOnly);
  const sides = Object.keys(rows[0]?.passes ?? {}).filter((side) =>
    rows[0].passes[side].some((sample) => sample[field] !== undefined),
  );
  return { rows, sides };
}

/** CPU time per request (user + system, median of the passes) of each Node side, per row. */
function printCpu(report) {
  const { rows, sides } = sidesWith(report, 'cpuUsPerRequest');
  if (sides.length === 0) return;
  console.log('\nCPU per request (user + system, us, median of the passes; steadier than rps on a busy machine):');
  for (const row of rows) {
    const parts = sides.map((side) => {
      const values = row.passes[side].map((sample) => sample.cpuUsPerRequest).filter((value) => value !== undefined);
      return `${side} ${values.length === 0 ? '-' : spreadOf(values).median}`;
    });
    console.log(`  ${row.scenario.padEnd(24)} ${parts.join('   ')}`);
  }
}

/** --trace-gc: each Node side's full (mark-compact) collections in each pass; V8's slow mode shows as many. */
function printFullGcs(report) {
  const { rows, sides } = sidesWith(report, 'fullGcs');
  if (sides.length === 0) return;
  console.log('\nfull (mark-compact) collections per pass (--trace-gc):');
  for (const row of rows) {
    const parts = sides.map((side) => `${side} [${row.passes[side].map((sample) => sample.fullGcs).join(', ')}]`);
    console.log(`  ${row.scenario.padEnd(24)} ${parts.join('   ')}`);
  }
}

const fmt = (value) => (value >= 100 ? value.toFixed(0) : value.toFixed(2));

function printNotes(report) {
  if (report.baseline !== undefined) console.log(`baseline: ${report.baseline}`);
  if (report.extraSides.includes('floor'))
    console.log("floor: bench/floor-proxy.mjs, a bare node:http + undici proxy with the sidecar's Node flags");
  if (report.extraSides.includes('nginx'))
    console.log(
      'nginx, haproxy: bench/peers.mjs, a static Authorization header added, bodies streamed, one process each',
    );
  console.log(
    `node options of every Node proxy: ${report.nodeOptions === '' ? "(none: Node's defaults)" : report.nodeOptions}`,
  );
  const peaks = Object.entries(report.rssPeakMiB).map(([side, mib]) => `${side} ${mib.toFixed(1)} MiB`);
  console.log(`RSS peak under load (whole run): ${peaks.join(', ')}`);
  const e = report.expiry;
  if (e === undefined) return;
  console.log(
    `${e.concurrency} concurrent requests at token expiry: ${e.tokenRequestsDuringExpiry} token request(s), all 200: ${e.all200}, finished after the token arrived: p50 ${e.afterReleaseMs.p50.toFixed(1)} ms, max ${e.afterReleaseMs.max.toFixed(1)} ms`,
  );
  if (e.directBurstMs !== undefined)
    console.log(
      `  for scale, the same ${e.concurrency} requests at once with no wait, last answer after: direct ${e.directBurstMs.toFixed(1)} ms, through the sidecar with a valid token ${e.validTokenBurstMs.toFixed(1)} ms`,
    );
}

/**
 * The goals, each with the figure and a verdict: `met`, `NOT MET`, or `noisy` when a row it
 * reads moved more than NOISY_SPREAD between passes. Goals that need a side this run did not
 * measure (the floor) are listed as not measured.
 */
export function goalVerdicts(report) {
  const verdicts = [];
  const judge = (goal, figure, met, row, sides) =>
    verdicts.push({
      goal,
      figure,
      // One pass (--smoke) has no spread to tell a figure from noise: it is shown, not judged.
      verdict:
        report.passes < 2
          ? 'one pass: not judged'
          : row !== undefined && noisy(row, sides)
            ? 'noisy'
            : met
              ? 'met'
              : 'NOT MET',
    });
  const hasFloor = report.extraSides.includes('floor');
  for (const row of report.rows.filter((candidate) => !candidate.latencyOnly)) {
    if (hasFloor) {
      const ratio = row.sidecar.rps / row.floor.rps;
      judge(
        `${row.scenario}: sidecar / floor >= ${GOALS.floorRatio}`,
        `${ratio.toFixed(2)}`,
        ratio >= GOALS.floorRatio,
        row,
        ['sidecar', 'floor'],
      );
      const over = row.rssPeakMiB.sidecar - row.rssPeakMiB.floor;
      judge(
        `${row.scenario}: RSS peak <= floor's + ${GOALS.rssOverFloorMiB} MiB`,
        `+${over.toFixed(1)} MiB`,
        over <= GOALS.rssOverFloorMiB,
      );
    } else
      verdicts.push({ goal: `${row.scenario}: against the floor`, figure: '-', verdict: 'not measured (--floor)' });
    if (row.scenario.includes('upload'))
      judge(
        `${row.scenario}: sidecar / direct >= ${GOALS.uploadRatio}`,
        row.ratio.toFixed(2),
        row.ratio >= GOALS.uploadRatio,
        row,
        ['sidecar', 'direct'],
      );
  }
  const dpopRow = report.extraSides.includes('dpop')
    ? report.rows.find((row) => row.scenario.startsWith('small GET') && !row.latencyOnly)
    : undefined;
  if (dpopRow !== undefined) {
    const ratio = dpopRow.dpop.rps / dpopRow.sidecar.rps;
    judge(
      `${dpopRow.scenario}: DPoP / bearer account >= ${GOALS.dpopRatio}`,
      ratio.toFixed(2),
      ratio >= GOALS.dpopRatio,
      dpopRow,
      ['sidecar', 'dpop'],
    );
  }
  const steady = report.rows.find((row) => row.latencyOnly);
  if (steady !== undefined)
    judge(
      `${steady.scenario}: added p99 <= ${GOALS.addedP99Ms} ms`,
      `${steady.addedP99.toFixed(2)} ms`,
      steady.addedP99 <= GOALS.addedP99Ms,
      steady,
      ['sidecar', 'direct'],
    );
  const e = report.expiry;
  if (e !== undefined) {
    judge(
      `${e.concurrency} requests at an expired token: ${GOALS.expiryTokenRequests} token request`,
      String(e.tokenRequestsDuringExpiry),
      e.tokenRequestsDuringExpiry === GOALS.expiryTokenRequests,
    );
    judge(
      `... last answer <= ${GOALS.expiryLastAnswerMs} ms after the token`,
      `${e.afterReleaseMs.max.toFixed(0)} ms`,
      e.afterReleaseMs.max <= GOALS.expiryLastAnswerMs && e.all200,
    );
  }
  return verdicts;
}

function printGoals(report) {
  console.log('\ngoals:');
  for (const { goal, figure, verdict } of goalVerdicts(report))
    console.log(`  ${goal.padEnd(62)} ${figure.padStart(10)}  ${verdict}`);
}
