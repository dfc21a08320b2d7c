// Preloaded with `node --import` (NODE_OPTIONS): appends the URL of every ES module the process
// resolves to the file named by RECORD_IMPORTS_FILE, so a test can tell which packages were loaded.
// With RECORD_REQUIRES_FILE also set, the paths of every CommonJS module require()d (createRequire
// included: the resolve hook does not see those) and Node's own modules it loaded
// (process.moduleLoadList) are written there when the process exits.
import { register } from 'node:module';
import Module from 'node:module';
import { writeFileSync } from 'node:fs';

register('./record-imports-hooks.mjs', import.meta.url, { data: { file: process.env.RECORD_IMPORTS_FILE } });

const requires = process.env.RECORD_REQUIRES_FILE;
if (requires !== undefined) {
  process.on('exit', () =>
    writeFileSync(requires, `${[...Object.keys(Module._cache), ...process.moduleLoadList].join('\n')}\n`),
  );
}
