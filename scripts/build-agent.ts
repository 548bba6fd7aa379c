/**
 * `npm run build:agent`: builds `dist/rollcall-agent`, the agent as one
 * executable file for Linux x64, with Node's single executable application
 * support. Nothing is downloaded: esbuild bundles agent/main.ts and its
 * dependencies into one CommonJS file (node-forge apart, as an asset loaded
 * on first use; Ajv's validators precompiled), Node turns it into a blob,
 * and postject injects the blob into a copy of the Node binary that runs
 * this script.
 *
 *   node dist/scripts/build-agent.js [--out dist/rollcall-agent]
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import standaloneModule from 'ajv/dist/standalone/index.js';
import { build, type Plugin } from 'esbuild';
import { inject } from 'postject';
import { parseCommandArgs, processIo, runCli, type CliIo } from '../common/cli-support.js';
import { EnrollRequest, EnrollResponse } from '../common/enroll-api.js';
import { SERVER_MESSAGE_SCHEMAS } from '../common/protocol.js';

const run = promisify(execFile);

/** The fuse Node looks for to know a blob was injected. */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/** Name of the SEA asset that carries node-forge, bundled on its own. */
const FORGE_ASSET = 'node-forge.cjs';

/**
 * esbuild plugin: node-forge stays out of the executable's main script and
 * is loaded on first use. common/pki.ts imports it for certificates and
 * CSRs, which `run` needs only when it renews its certificate. In the main
 * script it would cost memory for the life of the process even unused: V8
 * holds the whole main script's source on its heap (forge is ~290 KiB of
 * its ~650 KiB) and reading it pages in as much of the executable, and
 * running forge's module code builds its tables (docs/agent.md, "Memory and
 * CPU"). So forge is bundled separately into a single-executable asset and
 * the main script gets a stand-in that forwards every property read to the
 * real module, compiled from the asset by the first read.
 */
function forgeFromAsset(): Plugin {
  return {
    name: 'node-forge-from-asset',
    setup(b) {
      b.onResolve({ filter: /^node-forge$/ }, () => ({ path: 'node-forge', namespace: 'node-forge-from-asset' }));
      b.onLoad({ filter: /.*/, namespace: 'node-forge-from-asset' }, () => ({
        loader: 'js',
        contents: [
          'let real;',
          'function load() {',
          `  const source = require('node:sea').getAsset(${JSON.stringify(FORGE_ASSET)}, 'utf8');`,
          '  const m = { exports: {} };',
          `  require('node:vm').compileFunction(source, ['module', 'exports', 'require'], { filename: ${JSON.stringify(FORGE_ASSET)} })(m, m.exports, require);`,
          '  return (real = m.exports);',
          '}',
          // __esModule is asked by the bundle's interop helper at import time: answering it must not load forge.
          "module.exports = new Proxy({}, { get: (_t, key) => (key === '__esModule' ? undefined : (real ?? load())[key]) });",
        ].join('\n'),
      }));
    },
  };
}

/** Every schema the agent compiles with Ajv: the server's messages and the enrollment exchange. */
const AGENT_SCHEMAS = [...Object.values(SERVER_MESSAGE_SCHEMAS), EnrollRequest, EnrollResponse];

/**
 * Ajv's standalone code for every schema in AGENT_SCHEMAS: a CommonJS module
 * exporting `v<i>` for the schema whose JSON is `keys[i]`.
 */
export function agentValidatorsSource(): { keys: string[]; code: string } {
  const ajv = new Ajv({ strict: true, allErrors: false, code: { source: true } });
  const refs: Record<string, string> = {};
  AGENT_SCHEMAS.forEach((schema, i) => {
    ajv.addSchema(schema, `s${i}`);
    refs[`v${i}`] = `s${i}`;
  });
  const standaloneCode = standaloneModule as unknown as { default: (a: Ajv, r: Record<string, string>) => string };
  return { keys: AGENT_SCHEMAS.map((schema) => JSON.stringify(schema)), code: standaloneCode.default(ajv, refs) };
}

/**
 * esbuild plugin: the agent's Ajv validators are compiled at build time
 * (Ajv's standalone code, the same options as common/protocol.ts and
 * common/enroll-api.ts: strict, first error only), and `ajv` in the
 * executable is a stand-in whose compile() hands out the precompiled
 * function for the same schema, compared by its JSON. The validators are
 * Ajv's own generated code, so results and error objects are the same; what
 * the executable saves is Ajv itself: its source in the main script and the
 * instance with its compiled schemas on the heap, some 1 MiB of idle RSS
 * (docs/agent.md, "Memory and CPU"). A schema that was not precompiled is
 * an error at compile(), which the build test's enrollment and check-ins
 * would hit.
 */
function precompiledAjv(root: string): Plugin {
  const { keys, code } = agentValidatorsSource();
  return {
    name: 'precompiled-ajv',
    setup(b) {
      b.onResolve({ filter: /^ajv$/ }, () => ({ path: 'ajv', namespace: 'precompiled-ajv' }));
      b.onResolve({ filter: /^precompiled-validators$/ }, () => ({ path: 'validators', namespace: 'precompiled-ajv' }));
      b.onLoad({ filter: /^validators$/, namespace: 'precompiled-ajv' }, () => ({ contents: code, resolveDir: root, loader: 'js' }));
      b.onLoad({ filter: /^ajv$/, namespace: 'precompiled-ajv' }, () => ({
        loader: 'js',
        contents: [
          "const validators = require('precompiled-validators');",
          `const byKey = new Map(${JSON.stringify(keys)}.map((key, i) => [key, validators['v' + i]]));`,
          'class Ajv {',
          '  compile(schema) {',
          '    const validate = byKey.get(JSON.stringify(schema));',
          "    if (!validate) throw new Error('this schema was not precompiled into the agent executable (scripts/build-agent.ts)');",
          '    return validate;',
          '  }',
          '}',
          'module.exports = { Ajv, default: Ajv };',
        ].join('\n'),
      }));
    },
  };
}

/** What the build produced. */
export interface AgentBuild {
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * Builds the agent executable at `out`; `root` is the project root (for
 * agent/main.ts). `entry` replaces the agent's entry point (the agent bench
 * builds an empty program the same way, as the floor of any such file).
 */
export async function buildAgentExecutable(out: string, root: string, entry = path.join(root, 'agent', 'main.ts')): Promise<AgentBuild> {
  const work = path.join(path.dirname(out), '.sea-build');
  await fs.mkdir(work, { recursive: true });
  const bundle = path.join(work, 'rollcall-agent.cjs');
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    outfile: bundle,
    logLevel: 'warning',
    legalComments: 'none',
    minify: true,
    plugins: [forgeFromAsset(), precompiledAjv(root)],
    // ws tries optional native add-ons; inside the executable require() loads built-ins only, so skip the attempt.
    define: { 'process.env.WS_NO_BUFFER_UTIL': '"1"', 'process.env.WS_NO_UTF_8_VALIDATE': '"1"' },
  });
  const forge = path.join(work, FORGE_ASSET);
  await build({
    stdin: { contents: "module.exports = require('node-forge');", resolveDir: root, loader: 'js' },
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    outfile: forge,
    logLevel: 'warning',
    legalComments: 'none',
    minify: true,
  });
  const blob = path.join(work, 'rollcall-agent.blob');
  const config = path.join(work, 'sea-config.json');
  await fs.writeFile(config, JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false, assets: { [FORGE_ASSET]: forge } }));
  await run(process.execPath, ['--experimental-sea-config', config]);
  const tmp = `${out}.tmp`;
  await fs.copyFile(process.execPath, tmp);
  await inject(tmp, 'NODE_SEA_BLOB', await fs.readFile(blob), { sentinelFuse: SEA_FUSE });
  await fs.chmod(tmp, 0o755);
  await fs.rename(tmp, out);
  await fs.rm(work, { recursive: true, force: true });
  const bytes = (await fs.stat(out)).size;
  const sha256 = crypto.createHash('sha256').update(await fs.readFile(out)).digest('hex');
  return { file: out, bytes, sha256 };
}

/** CLI entry. */
export async function buildAgentMain(argv: string[], io: CliIo = processIo): Promise<number> {
  return runCli(
    async () => {
      const { values } = parseCommandArgs(argv, { out: { type: 'string' }, debug: { type: 'boolean' } });
      const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
      const out = path.resolve(values.out ?? path.join(root, 'dist', 'rollcall-agent'));
      const result = await buildAgentExecutable(out, root);
      io.out(`built ${result.file}: ${(result.bytes / 2 ** 20).toFixed(1)} MiB, sha256 ${result.sha256}`);
      return 0;
    },
    io,
    argv.includes('--debug'),
    () => 1,
  );
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) process.exitCode = await buildAgentMain(process.argv.slice(2));
