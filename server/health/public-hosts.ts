/**
 * Whether each configured public host name resolves, and to what. Lookups
 * go through a resolver seam (tests inject one and never leave loopback),
 * each with a deadline; answers are kept for a while and refreshed in the
 * background, so a slow DNS server never slows the health report down.
 */
import net from 'node:net';
import { privateRange } from '../../common/portcheck/dns-step.js';

/** Resolves a name to every address it has. */
export type HostResolver = (host: string) => Promise<readonly string[]>;

/** What one public host resolved to. */
export interface HostResolution {
  readonly host: string;
  readonly addresses: readonly string[];
  /** Addresses in ranges the internet cannot reach, each with its range. */
  readonly privateAddresses: readonly string[];
  /** `DNS_NXDOMAIN`, `DNS_TIMEOUT` or `DNS_PRIVATE` (every answer private), or null when it resolves publicly. */
  readonly failure: 'DNS_NXDOMAIN' | 'DNS_TIMEOUT' | 'DNS_PRIVATE' | null;
  /** One sentence for people. */
  readonly message: string;
  readonly checkedAt: string;
}

/** Options of {@link PublicHosts}. */
export interface PublicHostsOptions {
  readonly hosts: readonly string[];
  readonly resolve: HostResolver;
  /** Deadline of one lookup (default 2 s). */
  readonly timeoutMs?: number;
  /** Age after which an answer is looked up again in the background (default 60 s). */
  readonly refreshMs?: number;
  readonly now?: () => number;
}

/** A lookup that outlived its deadline. */
class LookupTimeout extends Error {}

function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LookupTimeout(`no DNS answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** Judges a set of answers (or an error) for one host. */
export function judgeResolution(host: string, outcome: { addresses: readonly string[] } | { error: unknown }, at: number): HostResolution {
  const checkedAt = new Date(at).toISOString();
  if ('error' in outcome) {
    const code = (outcome.error as { code?: string }).code ?? '';
    const timeout = outcome.error instanceof LookupTimeout || code === 'EAI_AGAIN' || code === 'ETIMEOUT';
    const text = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
    return {
      host,
      addresses: [],
      privateAddresses: [],
      failure: timeout ? 'DNS_TIMEOUT' : 'DNS_NXDOMAIN',
      message: timeout ? `no DNS answer for ${host} in time (${text})` : `${host} does not resolve (${code || text}): agents cannot find the server by this name`,
      checkedAt,
    };
  }
  const privateAddresses = outcome.addresses.filter((a) => privateRange(a) !== undefined).map((a) => `${a} (${privateRange(a)})`);
  const allPrivate = outcome.addresses.length > 0 && privateAddresses.length === outcome.addresses.length;
  const list = outcome.addresses.join(', ');
  return {
    host,
    addresses: outcome.addresses,
    privateAddresses,
    failure: allPrivate ? 'DNS_PRIVATE' : outcome.addresses.length === 0 ? 'DNS_NXDOMAIN' : null,
    message: allPrivate
      ? `${host} resolves only to private addresses (${privateAddresses.join(', ')}): agents outside your LAN cannot reach it`
      : privateAddresses.length > 0
        ? `${host} resolves to ${list}, some of them private (${privateAddresses.join(', ')})`
        : outcome.addresses.length === 0
          ? `${host} has no addresses`
          : `${host} resolves to ${list}`,
    checkedAt,
  };
}

/** Keeps the resolution of every public host, refreshed in the background. */
export class PublicHosts {
  private readonly cache = new Map<string, HostResolution>();
  private readonly inflight = new Map<string, Promise<HostResolution>>();
  private readonly timeoutMs: number;
  private readonly refreshMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: PublicHostsOptions) {
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.refreshMs = opts.refreshMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  /**
   * The latest answer for every host. A host never looked up is looked up
   * now (within the deadline); a stale answer is returned as it is while a
   * fresh lookup runs in the background.
   */
  async current(): Promise<HostResolution[]> {
    return Promise.all(
      this.opts.hosts.map(async (host) => {
        const known = this.cache.get(host);
        if (!known) return this.lookup(host);
        if (this.now() - Date.parse(known.checkedAt) >= this.refreshMs) void this.lookup(host);
        return known;
      }),
    );
  }

  private lookup(host: string): Promise<HostResolution> {
    const running = this.inflight.get(host);
    if (running) return running;
    const work = (async () => {
      if (net.isIP(host)) return judgeResolution(host, { addresses: [host] }, this.now());
      try {
        return judgeResolution(host, { addresses: await withDeadline(this.opts.resolve(host), this.timeoutMs) }, this.now());
      } catch (err) {
        return judgeResolution(host, { error: err }, this.now());
      }
    })().then((r) => {
      this.cache.set(host, r);
      this.inflight.delete(host);
      return r;
    });
    this.inflight.set(host, work);
    return work;
  }
}
