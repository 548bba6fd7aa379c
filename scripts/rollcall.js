#!/usr/bin/env node
// Thin launcher for the compiled server and admin CLI (built by `npm run build`, or by `npm ci` via prepare).
import { rollcallMain } from '../dist/server/cli.js';

process.exitCode = await rollcallMain(process.argv.slice(2));
