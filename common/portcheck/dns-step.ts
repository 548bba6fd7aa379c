/**
 * The DNS step: every A/AAAA answer for the host, once per check, with a
 * flag for private answers behind a public name (the classic "works on the
 * LAN, nowhere else" mistake).
 */
import dns from 'node:dns';
import net from 'node:net';
import { errorCode, errorText, startStep } from './step-result.js';
import type { StepResult } from './types.js';

/** Resolves a name to its addresses (A and AAAA), in the order to try them. */
export type Resolve = (host: string) => Promise<readonly string[]>;

/** The system resolver (getaddrinfo, as agents and browsers use): every answer, in the system's order. */
export const systemResolve: Resolve = async (host) => (await dns.promises.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** Address ranges that the internet cannot reach, with a name for people. */
const NON_PUBLIC_RANGES: readonly (readonly [string, number, 'ipv4' | 'ipv6', string])[] = [
  ['10.0.0.0', 8, 'ipv4', 'private'],
  ['172.16.0.0', 12, 'ipv4', 'private'],
  ['192.168.0.0', 16, 'ipv4', 'private'],
  ['100.64.0.0', 10, 'ipv4', 'carrier-grade NAT'],
  ['169.254.0.0', 16, 'ipv4', 'link-local'],
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['fc00::', 7, 'ipv6', 'unique local'],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['::1', 128, 'ipv6', 'loopback'],
];

/**
 * The non-public range an address falls in (`"10.0.0.0/8 private"`), or
 * undefined for a public address. IPv4-mapped IPv6 addresses count as their
 * IPv4 address.
 */
export function privateRange(address: string): string | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  const ip = mapped ?? address;
  const family = net.isIPv4(ip) ? 'ipv4' : net.isIPv6(ip) ? 'ipv6' : undefined;
  if (!family) return undefined;
  for (const [base, prefix, rangeFamily, label] of NON_PUBLIC_RANGES) {
    if (rangeFamily !== family) continue;
    const list = new net.BlockList();
    list.addSubnet(base, prefix, rangeFamily);
    if (list.check(ip, family)) return `${base}/${prefix} ${label}`;
  }
  return undefined;
}

/** True for names that are meant to be local: `localhost` and `*.localhost`. */
function isLocalName(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return h === 'localhost' || h.endsWith('.localhost');
}

/** What the DNS step found. */
export interface DnsOutcome {
  readonly result: StepResult;
  /** Addresses to try, in order (empty when resolution failed). */
  readonly addresses: readonly string[];
}

/** Options of the DNS step. */
export interface DnsStepOptions {
  readonly resolve: Resolve;
  readonly timeoutMs: number;
  /** When true, a private answer is noted in the detail but is not a failure (split DNS on purpose). */
  readonly allowPrivate: boolean;
}

const NXDOMAIN_CODES = new Set(['ENOTFOUND', 'EAI_NONAME', 'EAI_NODATA', 'ENODATA', 'NXDOMAIN']);

function resolveWithin(host: string, opts: DnsStepOptions): Promise<readonly string[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(Object.assign(new Error(`no DNS answer within ${opts.timeoutMs} ms`), { code: 'DNS_TIMEOUT' })), opts.timeoutMs);
    opts.resolve(host).then(
      (addresses) => {
        clearTimeout(timer);
        resolve(addresses);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** Resolves the host (an IP literal is used as it is). Never rejects. */
export async function dnsStep(host: string, opts: DnsStepOptions): Promise<DnsOutcome> {
  const timer = startStep('dns');
  if (net.isIP(host)) return { result: timer.pass(`${host} is an IP address; no DNS lookup`), addresses: [host] };
  let addresses: readonly string[];
  try {
    addresses = [...new Set(await resolveWithin(host, opts))];
  } catch (err) {
    const code = errorCode(err);
    if (NXDOMAIN_CODES.has(code)) return { result: timer.fail('DNS_NXDOMAIN', `${host} does not resolve: ${errorText(err)}`), addresses: [] };
    return { result: timer.fail('DNS_TIMEOUT', `no usable DNS answer for ${host}: ${errorText(err)}`), addresses: [] };
  }
  if (addresses.length === 0) return { result: timer.fail('DNS_NXDOMAIN', `${host} has no A or AAAA record`), addresses: [] };
  const answers = addresses.join(', ');
  const privates = isLocalName(host) ? [] : addresses.flatMap((a) => (privateRange(a) ? [`${a} (${privateRange(a)})`] : []));
  if (privates.length === 0) return { result: timer.pass(answers), addresses };
  if (opts.allowPrivate) return { result: timer.pass(`${answers}; private answers allowed: ${privates.join(', ')}`), addresses };
  return { result: timer.fail('DNS_PRIVATE', `${answers}; not reachable from the internet: ${privates.join(', ')}`), addresses };
}
