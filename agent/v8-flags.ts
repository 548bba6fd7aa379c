/**
 * Imported first by agent/main.ts, the entry point of the single executable,
 * before any other module runs: keeps V8 to its bytecode interpreter
 * (`--max-opt=0`: no Sparkplug, no Turbofan). The agent is idle nearly all
 * the time; what its few hot paths at startup gained from optimised code
 * cost some 3 MiB of the executable's optimising-compiler code paged in
 * plus about 2 MiB of compiler and machine-code memory, all kept resident
 * for the life of the process (measured in docs/agent.md, "Memory and
 * CPU"). Node 20's single executables cannot carry V8 options and
 * NODE_OPTIONS refuses this one, so it is set here; tiering decisions read
 * it at run time. Tests and `node dist/...` runs are not affected.
 */
import v8 from 'node:v8';

v8.setFlagsFromString('--max-opt=0 --bytecode-old-age=1');
