/**
 * Entry point of the single-file agent executable (Node's single executable
 * application support; see scripts/build-agent.ts). CommonJS-friendly: no
 * top-level await.
 */
// Must stay the first import: it sets V8 flags before any other module runs.
import './v8-flags.js';
import { agentMain } from './cli.js';

void agentMain(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
