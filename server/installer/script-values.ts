/**
 * The values an installer script embeds, validated once, and the quoting
 * that puts them into POSIX sh and PowerShell source safely.
 *
 * Every value must be printable ASCII: a newline or other control
 * character could end a quoted string or a comment in either language, and
 * PowerShell treats the typographic quotes (U+2018-U+201B) as quotes too.
 * Inside single quotes neither shell expands `$`, backticks or `"`, so the
 * only character to escape is the quote itself.
 */
import net from 'node:net';
import { RollcallError } from '../../common/errors.js';

/** Everything an installer embeds. */
export interface InstallerValues {
  /** `host:port` entries, tried in order: LAN first, then WAN, then failover servers. */
  readonly servers: readonly string[];
  readonly caPin: string;
  readonly caPem: string;
  /** The enrollment token's secret. */
  readonly token: string;
  /** `http://[user:pass@]host:port`, or null. */
  readonly proxy: string | null;
  /** SHA-256 (hex) of the agent executable the script downloads. */
  readonly sha256: string;
  /** Download path on the agent port, e.g. `/agent/linux-x64`. */
  readonly downloadPath: string;
  /** For the header comment only. */
  readonly groupPath: string;
  readonly instanceId: string;
  readonly generatedAt: string;
}

const PRINTABLE = /^[ -~]*$/;

/** True when the text holds a C0 control character or DEL. */
function hasControl(text: string): boolean {
  return [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
}
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function invalid(message: string): RollcallError {
  return new RollcallError('INSTALLER_VALUE_INVALID', message);
}

/** Checks one `host:port` (IPv6 in brackets); returns it unchanged. */
export function checkServerAddress(entry: string): string {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(entry);
  const host = m?.[1]?.replace(/^\[|\]$/g, '');
  const port = Number(m?.[2]);
  const hostOk = host !== undefined && (m![1]!.startsWith('[') ? net.isIPv6(host) : net.isIPv4(host) || HOST_NAME.test(host));
  if (!m || !hostOk || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalid(`server address ${JSON.stringify(entry)} is not host:port (a host name, an IPv4 address or [IPv6], and a port 1-65535)`);
  }
  return entry;
}

/** Checks a proxy URL: http, a host and a port, credentials optional, printable ASCII only. */
export function checkProxy(proxy: string): string {
  if (!PRINTABLE.test(proxy)) throw invalid('the proxy contains a newline or another control or non-ASCII character');
  const url = URL.canParse(proxy) ? new URL(proxy) : undefined;
  if (!url || url.protocol !== 'http:' || !url.hostname || !url.port || (url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw invalid('the proxy must look like http://[user:password@]host:port (credentials percent-encoded where they hold @, : or /)');
  }
  return proxy;
}

/** Validates every value; lists all problems at once in `INSTALLER_VALUE_INVALID`. */
export function checkInstallerValues(v: InstallerValues): InstallerValues {
  const problems: string[] = [];
  const check = (fn: () => unknown): void => {
    try {
      fn();
    } catch (err) {
      problems.push((err as Error).message);
    }
  };
  if (v.servers.length === 0) problems.push('at least one server address is needed');
  for (const s of v.servers) check(() => checkServerAddress(s));
  if (v.proxy !== null) check(() => checkProxy(v.proxy!));
  if (!/^sha256:[0-9a-f]{64}$/.test(v.caPin)) problems.push('the CA pin is not sha256: and 64 hex digits');
  if (!/^rce_[A-Za-z0-9_-]{20,100}$/.test(v.token)) problems.push('the enrollment token is malformed');
  if (!/^[0-9a-f]{64}$/.test(v.sha256)) problems.push('the executable checksum is not 64 hex digits');
  if (!/^\/agent\/[a-z0-9-]+$/.test(v.downloadPath)) problems.push('the download path is malformed');
  if (!/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/.test(v.caPem)) problems.push('the CA certificate is not one PEM certificate');
  for (const [name, text] of [['group path', v.groupPath], ['instance id', v.instanceId], ['time', v.generatedAt]] as const) {
    if (hasControl(text)) problems.push(`the ${name} contains a control character`);
  }
  if (problems.length > 0) throw invalid(`cannot make an installer:\n  - ${problems.join('\n  - ')}`);
  return v;
}

function assertQuotable(value: string): void {
  if (!PRINTABLE.test(value)) throw invalid(`refusing to embed ${JSON.stringify(value.slice(0, 40))}: newlines, control and non-ASCII characters are not allowed`);
}

/** A POSIX sh single-quoted word: `'` becomes `'\''`. Multi-line text is allowed only for the PEM. */
export function shQuote(value: string, opts: { multiline?: boolean } = {}): string {
  if (opts.multiline) value.split('\n').forEach(assertQuotable);
  else assertQuotable(value);
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** A PowerShell single-quoted string: every quote character (ASCII and typographic) is doubled. */
export function psQuote(value: string, opts: { multiline?: boolean } = {}): string {
  if (opts.multiline) value.split('\n').forEach(assertQuotable);
  else assertQuotable(value);
  return `'${value.replace(/['\u2018\u2019\u201a\u201b]/g, (q) => q + q)}'`;
}

/** A comment-safe rendering of free text (group paths may hold any printable character). */
export function commentText(value: string): string {
  return [...value].map((c) => (hasControl(c) || c === '\u2028' || c === '\u2029' ? '?' : c)).join('');
}
