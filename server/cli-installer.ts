/**
 * `rollcall installer CUSTOMER|TOKEN --os linux|windows`: writes an install
 * script made by the server (docs/install.md).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import { parseDuration } from '../common/duration.js';
import { connectAdmin } from './admin-client.js';
import { ADMIN_FLAGS, adminTarget, when } from './cli-common.js';
import type { Installer } from './installer/installers.js';

/** Help lines for `rollcall --help`. */
export const INSTALLER_HELP = `  rollcall installer CUSTOMER|TOKEN --os linux|windows [--server HOST:PORT …] [--proxy http://[user:pass@]host:port]
                     [--proxy-env VAR] [--ttl 30d] [--out FILE] [--json]
    an install script; for a customer a new enrollment token is made; --out - prints the script`;

/** `rollcall installer …`. */
export async function installerCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    ...ADMIN_FLAGS,
    os: { type: 'string' },
    server: { type: 'string', multiple: true },
    proxy: { type: 'string' },
    'proxy-env': { type: 'string' },
    ttl: { type: 'string' },
    out: { type: 'string' },
  });
  const [target, extra] = positionals;
  if (!target || extra !== undefined) throw usageError('installer needs exactly one CUSTOMER or enrollment TOKEN');
  if (values.os !== 'linux' && values.os !== 'windows') throw usageError('installer needs --os linux or --os windows');
  if (values.proxy && values['proxy-env']) throw usageError('give either --proxy or --proxy-env, not both');
  let proxy = values.proxy;
  if (values['proxy-env']) {
    proxy = env[values['proxy-env']];
    if (!proxy) throw usageError(`the environment variable ${values['proxy-env']} is empty or not set`);
  }
  const ttlSec = values.ttl === undefined ? undefined : Math.round(parseDuration(values.ttl) / 1000);
  // --server here is the agent-side address list; the API is reached through --data-dir or ROLLCALL_SERVER.
  const api = await connectAdmin(adminTarget({ ...values, server: undefined }, env));
  const made = await api.call<Installer>('POST', '/api/v1/installers', { target, os: values.os, servers: values.server, proxy, ttlSec });
  const out = values.out ?? made.filename;
  if (out === '-') {
    io.out(made.script.trimEnd());
    return 0;
  }
  const file = path.resolve(out);
  await fs.writeFile(file, made.script, { mode: 0o600 });
  if (values.json) {
    const { script: _script, ...rest } = made;
    io.out(JSON.stringify({ ...rest, file }));
    return 0;
  }
  const run = made.os === 'linux' ? `sudo sh ${path.basename(file)}` : `powershell -ExecutionPolicy Bypass -File ${path.basename(file)}   (as Administrator)`;
  io.out(
    [
      `wrote ${file} (${made.os}, group "${made.groupPath}", token ${made.tokenId}${made.tokenCreated ? ', new' : ''}, expires ${when(made.expiresAt)})`,
      `  servers: ${made.servers.join(', ')}${made.proxy ? '; through the given proxy' : ''}`,
      `  agent executable sha256: ${made.sha256}`,
      `It holds an enrollment token: hand it over like a password. On the computer: ${run}`,
    ].join('\n'),
  );
  return 0;
}
