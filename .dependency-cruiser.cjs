/**
 * Layering of src/, checked by `npm run lint:layers` (part of `npm run lint`, so CI enforces it).
 *
 * A module may import from its own layer and from the layers listed as `mayImport`, nothing else.
 * Type-only imports count too (tsPreCompilationDeps): a layer's interfaces live in that layer, and
 * a higher layer implements them (admin/metrics.ts implements proxy/types.ts's ProxyMetrics).
 *
 *   util <- stores <- config <- flows <- tokens <- proxy <- admin <- app <- demo <- cli
 *                                          tokens <- commands <------------------- cli
 *
 * - util:     leaf helpers (clock, logger, secrets, safe file reads); imports nothing of ours.
 * - stores:   token state at rest. Declares the options it takes (stores/index.ts StoreOptions);
 *             config/ validates them with the stores' own code (key file, state path), never the reverse.
 * - config:   schema, loading, resolution, and what is read from the files it names (config/tls.ts).
 * - flows:    the two token dialects: request builders and response parsers, the token HTTP client.
 * - tokens:   keeping one account's token fresh; tokens/types.ts holds what other layers see.
 * - proxy:    the data plane; declares the metrics it reports (proxy/types.ts).
 * - admin:    the admin port (status, metrics, refresh); implements the proxy's metrics interface.
 * - app.ts:   wires everything into a Sidecar (`serve`, live reload); app-*.ts are its parts.
 * - commands: `check` and `authorize`: the token side without the servers (no proxy, no admin).
 * - demo:     `bearer-sidecar demo` (runs a Sidecar against its own token server and API).
 * - cli:      cli.ts and cli-args.ts: argv to a command; the only place exit codes are chosen.
 *
 * No circular import anywhere in src/, inside a layer included.
 */
const LAYERS = {
  util: { path: '^src/util/', mayImport: [] },
  stores: { path: '^src/stores/', mayImport: ['util'] },
  config: { path: '^src/config/', mayImport: ['util', 'stores'] },
  flows: { path: '^src/flows/', mayImport: ['util', 'stores', 'config'] },
  tokens: { path: '^src/tokens/', mayImport: ['util', 'stores', 'config', 'flows'] },
  proxy: { path: '^src/proxy/', mayImport: ['util', 'stores', 'config', 'flows', 'tokens'] },
  admin: { path: '^src/admin/', mayImport: ['util', 'stores', 'config', 'flows', 'tokens', 'proxy'] },
  app: {
    path: '^src/app(-accounts|-listeners|-reload)?\\.ts$',
    mayImport: ['util', 'stores', 'config', 'flows', 'tokens', 'proxy', 'admin'],
  },
  commands: { path: '^src/commands/', mayImport: ['util', 'stores', 'config', 'flows', 'tokens'] },
  demo: { path: '^src/demo/', mayImport: ['util', 'stores', 'config', 'flows', 'tokens', 'proxy', 'admin', 'app'] },
  cli: {
    path: '^src/(cli(-args)?|healthcheck)\\.ts$',
    mayImport: ['util', 'stores', 'config', 'flows', 'tokens', 'proxy', 'admin', 'app', 'commands', 'demo'],
  },
};

const allLayers = Object.values(LAYERS).map((layer) => layer.path);

const layerRules = Object.entries(LAYERS).map(([name, layer]) => ({
  name: `layer-${name}`,
  severity: 'error',
  comment:
    `Layer ${name} may import only from itself` +
    (layer.mayImport.length === 0 ? ' (it is the bottom layer)' : ` and from: ${layer.mayImport.join(', ')}`) +
    '. A lower layer never imports a higher one: see the order in .dependency-cruiser.cjs and README.md "Development".',
  from: { path: layer.path },
  to: { path: '^src/', pathNot: [layer.path, ...layer.mayImport.map((lower) => LAYERS[lower].path)] },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'Circular import (type-only imports count): move what both sides need into a module both may import (e.g. a layer types.ts).',
      from: { path: '^src/' },
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'layer-unlisted',
      severity: 'error',
      comment:
        'Every module of src/ belongs to a layer: add its directory to LAYERS in .dependency-cruiser.cjs (and to README.md "Development").',
      from: { path: '^src/', pathNot: allLayers },
      to: {},
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'An import that resolves to no file.',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports (`import type`) are dependencies too: a layer's interfaces live in that layer.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    reporterOptions: {},
  },
};
