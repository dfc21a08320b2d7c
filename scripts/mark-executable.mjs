// tsc drops the executable bit; the npm `bin` entry and `./dist/cli.js` need it.
import { chmodSync } from 'node:fs';
chmodSync(new URL('../dist/cli.js', import.meta.url), 0o755);
