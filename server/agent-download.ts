/**
 * The agent executables the agent port serves to installers:
 * `GET /agent/<platform>` streams the file, with its SHA-256 in
 * `x-rollcall-sha256`; `GET /agent/<platform>.sha256` answers the digest
 * alone. The files come from the server configuration (`--agent-binary`,
 * `--agent-binary-windows`); the Linux one defaults to `dist/rollcall-agent`
 * of this package when that file exists (`npm run build:agent`).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { httpError } from './errors.js';

/** Platforms an installer can be made for, and the download path of each. */
export const AGENT_PLATFORMS = { 'linux-x64': '/agent/linux-x64', 'windows-x64': '/agent/windows-x64' } as const;
export type AgentPlatform = keyof typeof AGENT_PLATFORMS;

/** One executable ready to serve. */
export interface AgentBinaryInfo {
  readonly platform: AgentPlatform;
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
}

/** Where the built Linux agent lands: `<package root>/dist/rollcall-agent`. */
export function defaultLinuxAgentBinary(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4 && !fs.existsSync(path.join(dir, 'package.json')); i += 1) dir = path.dirname(dir);
  return path.join(dir, 'dist', 'rollcall-agent');
}

/** Finds and hashes the configured executables; the digest is recomputed only when the file changes. */
export class AgentBinaries {
  private readonly cache = new Map<string, { key: string; info: AgentBinaryInfo }>();

  constructor(private readonly files: Readonly<Partial<Record<AgentPlatform, string | null>>>) {}

  /** The executable of a platform; throws `AGENT_BINARY_NOT_FOUND` (404) naming the file and the option to set. */
  async info(platform: AgentPlatform): Promise<AgentBinaryInfo> {
    const file = this.files[platform];
    const option = platform === 'linux-x64' ? '--agent-binary' : '--agent-binary-windows';
    if (!file) throw httpError('AGENT_BINARY_NOT_FOUND', `no agent executable for ${platform} is configured; start the server with ${option} FILE`);
    let stat: fs.Stats;
    try {
      stat = await fsp.stat(file);
    } catch (err) {
      throw httpError('AGENT_BINARY_NOT_FOUND', `the agent executable for ${platform} (${file}) is missing: run "npm run build:agent" or set ${option}`, err);
    }
    if (!stat.isFile()) throw httpError('AGENT_BINARY_NOT_FOUND', `the agent executable for ${platform} (${file}) is not a file`);
    const key = `${stat.size}:${stat.mtimeMs}:${stat.ino}`;
    const cached = this.cache.get(platform);
    if (cached?.key === key) return cached.info;
    const hash = crypto.createHash('sha256');
    for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
    const info: AgentBinaryInfo = { platform, file, bytes: stat.size, sha256: hash.digest('hex') };
    this.cache.set(platform, { key, info });
    return info;
  }
}

/** Adds the download routes to the agent listener. */
export function registerAgentDownload(app: FastifyInstance, binaries: AgentBinaries, log: Logger): void {
  for (const [platform, route] of Object.entries(AGENT_PLATFORMS) as [AgentPlatform, string][]) {
    app.get(route, async (req, reply) => {
      const info = await binaries.info(platform);
      log.info({ platform, address: req.socket.remoteAddress, bytes: info.bytes }, 'agent executable downloaded');
      return reply
        .type('application/octet-stream')
        .header('content-length', String(info.bytes))
        .header('x-rollcall-sha256', info.sha256)
        .send(fs.createReadStream(info.file));
    });
    app.get(`${route}.sha256`, async (_req, reply) => {
      const info = await binaries.info(platform);
      return reply.type('text/plain').send(`${info.sha256}  rollcall-agent${platform.startsWith('windows') ? '.exe' : ''}\n`);
    });
  }
}
