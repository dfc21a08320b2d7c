// Preloaded with `node --import` (NODE_OPTIONS): appends the URL of every ES module the process
// resolves to the file named by RECORD_IMPORTS_FILE, so a test can tell which packages were loaded.
import { register } from 'node:module';

register('./record-imports-hooks.mjs', import.meta.url, { data: { file: process.env.RECORD_IMPORTS_FILE } });
