// Lints the Dockerfile (dockerfile-utils) and checks the image rules of issue 6 / STYLE.md:
// multi-stage with a production-only final stage, Node 24 slim base, numeric non-root user,
// exec-form entrypoint, the product's ports exposed, OCI labels, no secrets or remote fetches,
// and a .dockerignore that lets in exactly what the Dockerfile copies (never .env or .git).
//   node helm/ci/dockerfile-check.mjs Dockerfile .dockerignore
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { parse as parseYaml } from 'yaml';
import { chartDir, failIfProblems, repoRoot, toolsRequire } from './lib.mjs';

const [dockerfilePath = 'Dockerfile', ignorePath = '.dockerignore'] = process.argv.slice(2);
const text = readFileSync(path.resolve(repoRoot, dockerfilePath), 'utf8');
const requireTool = toolsRequire();
const { validate } = requireTool('dockerfile-utils');
const { DockerfileParser } = requireTool('dockerfile-ast');
const problems = [];

// dockerfile-utils: syntax and instruction errors, and its warnings (any is a failure here).
for (const diagnostic of validate(text)) {
  problems.push(`dockerfile-utils: line ${diagnostic.range.start.line + 1}: ${diagnostic.message}`);
}

const dockerfile = DockerfileParser.parse(text);
const args = new Map();
for (const arg of dockerfile.getInitialARGs()) {
  const [property] = arg.getProperties();
  if (property) args.set(property.getName(), property.getValue() ?? '');
}
const expand = (value) => value.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_, name) => args.get(name) ?? '');
const stages = dockerfile.getFROMs().map((from, index) => ({
  index,
  name: from.getBuildStage(),
  image: expand(from.getImageName() ?? '') + (from.getImageTag() ? `:${expand(from.getImageTag())}` : ''),
  instructions: [],
}));
{
  let current = -1;
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction.getKeyword() === 'FROM') current += 1;
    if (current >= 0) stages[current].instructions.push(instruction);
  }
}
const final = stages.at(-1);
const keyword = (stage, name) => stage.instructions.filter((i) => i.getKeyword() === name);
const argsOf = (instruction) => instruction.getArguments().map((a) => a.getValue());
const textOf = (instruction) => argsOf(instruction).join(' ');

if (stages.length < 2)
  problems.push('multi-stage build expected (build with dev dependencies, run with production ones)');
for (const stage of stages) {
  if (
    !/^node:24[.\d]*-(bookworm-|trixie-)?slim(@sha256:[a-f0-9]{64})?$/.test(stage.image) &&
    !stages.some((s) => s.name === stage.image)
  ) {
    problems.push(`stage ${stage.name ?? stage.index}: base image ${stage.image} is not a Node 24 slim image`);
  }
}
if (!stages.some((stage) => keyword(stage, 'RUN').some((run) => /npm run build/.test(textOf(run)))))
  problems.push('no stage runs `npm run build`');
for (const run of keyword(final, 'RUN')) {
  if (/npm (ci|install)\b/.test(textOf(run)) && !/--omit=dev/.test(textOf(run)))
    problems.push('the final stage installs dev dependencies');
}
const depsInstall = stages
  .flatMap((stage) => keyword(stage, 'RUN'))
  .find((run) => /npm ci\b.*--omit=dev/.test(textOf(run)));
if (!depsInstall) problems.push('no stage installs production dependencies only (npm ci --omit=dev)');

const user = keyword(final, 'USER').at(-1);
const userValue = user ? textOf(user) : '';
if (!/^\d+(:\d+)?$/.test(userValue))
  problems.push(`the final stage must end with a numeric USER (uid:gid), not "${userValue || 'root by default'}"`);
else if (userValue.split(':')[0] === '0') problems.push('USER 0 is root');

const entrypoint = keyword(final, 'ENTRYPOINT').at(-1);
const entrypointForm = entrypoint ? entrypoint.getTextContent().replace(/^\s*ENTRYPOINT\s*/i, '') : '';
if (!entrypointForm.startsWith('['))
  problems.push('ENTRYPOINT must be in exec form (["node", ...]) so SIGTERM reaches Node');
else if (!/^\[\s*"node"/.test(entrypointForm))
  problems.push('ENTRYPOINT must start Node directly: ["node", "/app/dist/cli.js"]');

const values = parseYaml(readFileSync(path.join(chartDir, 'values.yaml'), 'utf8'));
const exposed = new Set(
  keyword(final, 'EXPOSE')
    .flatMap(argsOf)
    .map((port) => Number(port.split('/')[0])),
);
for (const port of [values.listen.port, values.admin.port])
  if (!exposed.has(port)) problems.push(`EXPOSE ${port} is missing (the product's default port)`);

const labels = new Set(keyword(final, 'LABEL').flatMap((label) => label.getProperties().map((p) => p.getName())));
for (const name of ['title', 'description', 'version', 'revision', 'licenses', 'created']) {
  if (!labels.has(`org.opencontainers.image.${name}`))
    problems.push(`LABEL org.opencontainers.image.${name} is missing`);
}
if (keyword(final, 'HEALTHCHECK').length === 0)
  problems.push('HEALTHCHECK on /healthz is missing (docker run users get it; Kubernetes uses probes)');

for (const stage of stages) {
  for (const instruction of stage.instructions) {
    const name = instruction.getKeyword();
    const body = instruction.getTextContent();
    if (name === 'ADD')
      problems.push(`line ${instruction.getRange().start.line + 1}: ADD fetches and unpacks; use COPY`);
    if ((name === 'ENV' || name === 'ARG') && /(PASSWORD|SECRET|TOKEN|API_?KEY|CREDENTIAL)/i.test(body)) {
      problems.push(
        `line ${instruction.getRange().start.line + 1}: ${name} looks like a secret; secrets never go into image layers`,
      );
    }
    if (name === 'RUN' && /\b(curl|wget)\b/.test(body))
      problems.push(`line ${instruction.getRange().start.line + 1}: RUN downloads; use the package registries`);
  }
}

// .dockerignore: Docker's rules (last match wins, `!` re-includes, a pattern covers what is under it).
const patterns = readFileSync(path.resolve(repoRoot, ignorePath), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line && !line.startsWith('#'))
  .map((line) => {
    const negate = line.startsWith('!');
    const glob = path.posix.normalize(line.slice(negate ? 1 : 0)).replace(/^\/+|\/+$/g, '');
    const source = glob
      .split(/(\*\*|\*|\?)/)
      .map((part) =>
        part === '**'
          ? '.*'
          : part === '*'
            ? '[^/]*'
            : part === '?'
              ? '[^/]'
              : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
      )
      .join('');
    return { negate, regex: new RegExp(`^${source}$`) };
  });
const excluded = (file) => {
  const candidates = file.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let result = false;
  for (const { negate, regex } of patterns) if (candidates.some((candidate) => regex.test(candidate))) result = !negate;
  return result;
};
for (const file of [
  '.env',
  '.git/config',
  '.npmrc',
  'node_modules/yaml/package.json',
  'dist/cli.js',
  'test/e2e/x.test.ts',
  'helm/bearer-sidecar/values.yaml',
  'coverage/index.html',
]) {
  if (!excluded(file)) problems.push(`.dockerignore lets ${file} into the build context`);
}
for (const stage of stages) {
  for (const copy of keyword(stage, 'COPY')) {
    if (copy.getFlags().some((flag) => flag.getName() === 'from')) {
      const from = copy
        .getFlags()
        .find((flag) => flag.getName() === 'from')
        .getValue();
      if (!stages.some((s) => s.name === from)) problems.push(`COPY --from=${from}: no such stage`);
      continue;
    }
    for (const source of argsOf(copy).slice(0, -1)) {
      const relative = source.replace(/\/$/, '');
      if (!existsSync(path.join(repoRoot, relative))) problems.push(`COPY ${source}: not in the repository`);
      else if (excluded(relative) && excluded(`${relative}/x`))
        problems.push(`COPY ${source}: excluded by .dockerignore`);
    }
  }
}

failIfProblems('Dockerfile', problems);
console.log(
  `    ${stages.length} stages (${stages.map((s) => s.name ?? 'final').join(' -> ')}), final: ${final.image} as ${userValue}, exposes ${[...exposed].join(' ')}`,
);
