#!/usr/bin/env node
// `npm test`: build (end-to-end tests run the compiled CLIs and serve the built console), then run vitest.
// The summary reporter prints the closing "N passed, N failed" line; the exit
// status is vitest's (non-zero when anything failed).
import { spawnSync } from 'node:child_process';

const run = (cmd, args) => spawnSync(cmd, args, { stdio: 'inherit' }).status ?? 1;

const built = run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json']) || run(process.execPath, ['scripts/build-ui.js']);
if (built !== 0) {
  process.stdout.write('\n0 passed, 1 failed\n');
  process.exit(built);
}
process.exit(run(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', ...process.argv.slice(2)]));
