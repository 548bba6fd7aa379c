#!/usr/bin/env node
// Thin launcher for the compiled agent CLI (built by `npm run build`, or by `npm ci` via prepare).
import { agentMain } from '../dist/agent/cli.js';

process.exitCode = await agentMain(process.argv.slice(2));
