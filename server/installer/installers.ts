/**
 * Makes install scripts for a customer or an existing enrollment token.
 * For a customer a fresh enrollment token bound to its group is created
 * (the token list shows it with the note "installer for …"); a given token
 * is checked to be usable. The script embeds the server list, CA pin and
 * certificate, the token, the optional proxy and the SHA-256 of the agent
 * executable the agent port serves for the platform.
 */
import { RollcallError } from '../../common/errors.js';
import type { AgentBinaries, AgentPlatform } from '../agent-download.js';
import { AGENT_PLATFORMS } from '../agent-download.js';
import type { Customers } from '../msp/customers.js';
import type { Storage } from '../storage/index.js';
import { ENROLL_TOKEN_PREFIX } from '../storage/tokens-store.js';
import { linuxInstaller } from './linux-installer.js';
import { checkProxy, checkServerAddress, type InstallerValues } from './script-values.js';
import { windowsInstaller } from './windows-installer.js';

/** Operating systems an installer is made for. */
export const INSTALLER_OS = ['linux', 'windows'] as const;
export type InstallerOs = (typeof INSTALLER_OS)[number];

const PLATFORM_OF: Record<InstallerOs, AgentPlatform> = { linux: 'linux-x64', windows: 'windows-x64' };

/** What to make an installer for. */
export interface InstallerRequest {
  /** A customer (group id, portal id, name or group path) or an enrollment token's secret (`rce_…`). */
  readonly target: string;
  readonly os: InstallerOs;
  /** `host:port` list in the order agents try them; default: every public host at the agent port. */
  readonly servers?: readonly string[];
  readonly proxy?: string;
  /** Life of the token made for a customer (default 30 days). */
  readonly ttlMs?: number;
}

/** A made installer. */
export interface Installer {
  readonly os: InstallerOs;
  readonly filename: string;
  readonly script: string;
  readonly groupPath: string;
  readonly tokenId: string;
  /** Whether a token was made for this installer (a customer target). */
  readonly tokenCreated: boolean;
  readonly expiresAt: string | null;
  readonly servers: readonly string[];
  readonly proxy: boolean;
  readonly sha256: string;
}

/** What the installer maker needs. */
export interface InstallersDeps {
  readonly storage: Pick<Storage, 'enrollTokens' | 'groups'>;
  readonly customers: Pick<Customers, 'find'>;
  readonly binaries: AgentBinaries;
  readonly facts: { readonly instanceId: string; readonly caPin: string; readonly caPem: string; readonly publicHosts: readonly string[]; readonly agentPort: () => number };
  readonly now: () => number;
}

/** Makes install scripts. */
export class Installers {
  constructor(private readonly deps: InstallersDeps) {}

  /** Makes one installer; validation problems throw `INSTALLER_VALUE_INVALID` before any token is made. */
  async make(req: InstallerRequest): Promise<Installer> {
    const { deps } = this;
    const servers = req.servers && req.servers.length > 0 ? [...req.servers] : deps.facts.publicHosts.map((h) => `${h.includes(':') ? `[${h}]` : h}:${deps.facts.agentPort()}`);
    if (servers.length === 0) {
      throw new RollcallError('INSTALLER_NO_SERVER', 'no server address for the installer: give --server HOST:PORT (LAN first, then WAN) or start the server with --public-host');
    }
    servers.forEach(checkServerAddress);
    if (req.proxy !== undefined) checkProxy(req.proxy);
    const platform = PLATFORM_OF[req.os];
    const binary = await deps.binaries.info(platform);
    const now = deps.now();
    const { secret, tokenId, groupId, created, expiresAt } = await this.tokenFor(req, now);
    const group = await deps.storage.groups.get(groupId);
    const values: InstallerValues = {
      servers,
      caPin: deps.facts.caPin,
      caPem: deps.facts.caPem.replace(/\r\n/g, '\n'),
      token: secret,
      proxy: req.proxy ?? null,
      sha256: binary.sha256,
      downloadPath: AGENT_PLATFORMS[platform],
      groupPath: group?.path ?? groupId,
      instanceId: deps.facts.instanceId,
      generatedAt: new Date(now).toISOString(),
    };
    const script = req.os === 'linux' ? linuxInstaller(values) : windowsInstaller(values);
    return {
      os: req.os,
      filename: req.os === 'linux' ? 'rollcall-install.sh' : 'rollcall-install.ps1',
      script,
      groupPath: values.groupPath,
      tokenId,
      tokenCreated: created,
      expiresAt: expiresAt === null ? null : new Date(expiresAt).toISOString(),
      servers,
      proxy: req.proxy !== undefined,
      sha256: binary.sha256,
    };
  }

  private async tokenFor(req: InstallerRequest, now: number) {
    const { storage, customers } = this.deps;
    if (req.target.startsWith(ENROLL_TOKEN_PREFIX)) {
      const t = await storage.enrollTokens.findBySecret(req.target);
      if (!t || t.groupId === null) throw new RollcallError('ENROLL_TOKEN_UNKNOWN', 'no enrollment token has that secret (or its group was deleted)');
      if (t.revokedAt !== null) throw new RollcallError('ENROLL_TOKEN_REVOKED', `enrollment token ${t.id} was revoked`);
      if (t.expiresAt !== null && t.expiresAt <= now) throw new RollcallError('ENROLL_TOKEN_EXPIRED', `enrollment token ${t.id} has expired`);
      if (t.maxUses !== null && t.uses >= t.maxUses) throw new RollcallError('ENROLL_TOKEN_USED_UP', `enrollment token ${t.id} is used up`);
      return { secret: req.target, tokenId: t.id, groupId: t.groupId, created: false, expiresAt: t.expiresAt };
    }
    const customer = await customers.find(req.target);
    if (customer.status === 'unlinked') throw new RollcallError('GROUP_UNLINKED', `customer "${customer.name}" is unlinked; no installer can be made for it`);
    const expiresAt = now + (req.ttlMs ?? 30 * 86_400_000);
    const { token, secret } = await storage.enrollTokens.create({ groupId: customer.groupId, expiresAt, maxUses: null, note: `installer for ${customer.name}`, now });
    return { secret, tokenId: token.id, groupId: customer.groupId, created: true, expiresAt };
  }
}
