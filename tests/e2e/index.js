// `node --test tests/e2e/` hands this directory to Node as one module (Node 22
// reads a directory argument as a file path, not as a folder to search), which
// loads this file: it imports every *.test.mjs next to it, so their tests run
// and are reported as usual. `node --test 'tests/e2e/*.test.mjs'` works too.
import { readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
for (const name of readdirSync(here).filter((n) => n.endsWith('.test.mjs')).sort()) {
  await import(pathToFileURL(`${here}/${name}`).href);
}
