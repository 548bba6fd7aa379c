/**
 * Shared vocabulary of port and visibility checks: the steps of a check,
 * the failure classes with a remedy a person can act on, and the shapes of
 * results. Used by `rollcall portcheck`, `rollcall-agent diagnose`, the
 * agents' periodic probes and the server's health report.
 */

/** Steps of a port check, in order. */
export const PORTCHECK_STEPS = ['dns', 'tcp', 'tls', 'identify', 'websocket'] as const;
export type PortcheckStep = (typeof PORTCHECK_STEPS)[number];

/** Listener roles. */
export type ListenerRole = 'agent' | 'console';

/** Failure classes, each with the step it belongs to and a one-line remedy. */
export const PORTCHECK_FAILURES = {
  DNS_NXDOMAIN: { step: 'dns', remedy: 'The name does not exist in DNS: check the spelling, or create the A/AAAA record for the server.' },
  DNS_PRIVATE: {
    step: 'dns',
    remedy: 'The public name resolves to a private address: agents outside your LAN cannot reach it; publish the public (NAT) address, or use split DNS on purpose.',
  },
  DNS_TIMEOUT: { step: 'dns', remedy: 'No DNS answer in time: check the DNS servers this network uses.' },
  TCP_REFUSED: {
    step: 'tcp',
    remedy: 'Connection refused: nothing listens there, or a firewall rejects; check the server runs, the port number, and the port forwarding on your NAT.',
  },
  TCP_TIMEOUT: { step: 'tcp', remedy: 'No answer to the connection attempt: a firewall drops the packets; open the port inbound on the server side and outbound on the customer side.' },
  TCP_UNREACHABLE: { step: 'tcp', remedy: 'No route to the server from here: check this network’s routing, VPN or proxy settings.' },
  TLS_UNTRUSTED: { step: 'tls', remedy: 'The certificate is not from the pinned Rollcall CA: the port forwards to another server, or the pin is wrong.' },
  TLS_NAME_MISMATCH: { step: 'tls', remedy: 'The certificate does not name this host: add it with --public-host on the server and restart it.' },
  TLS_EXPIRED: { step: 'tls', remedy: 'The server certificate has expired or is not yet valid: restart the server to renew it, and check the clocks.' },
  TLS_HANDSHAKE_FAILED: { step: 'tls', remedy: 'TLS did not complete: something that does not speak TLS, or an old TLS version, answers on this port.' },
  WRONG_SERVICE: {
    step: 'identify',
    remedy: 'Another service (or another Rollcall instance or listener) answers on this port: fix the port forwarding so it reaches this server’s listener.',
  },
  PROXY_INTERCEPTED: {
    step: 'tls',
    remedy: 'A TLS-intercepting proxy or firewall sits in between: exempt the Rollcall server from TLS inspection.',
  },
  WS_REJECTED: { step: 'websocket', remedy: 'The server refused the agent channel: see the reason; a revoked or unknown agent must be re-enrolled.' },
  WS_NO_ROUNDTRIP: { step: 'websocket', remedy: 'The channel opened but no answer came back: a proxy may break WebSockets; exempt the server from it.' },
} as const satisfies Record<string, { step: PortcheckStep; remedy: string }>;

/** A failure class name. */
export type PortcheckFailure = keyof typeof PORTCHECK_FAILURES;

/** One step's outcome. */
export interface StepResult {
  readonly step: PortcheckStep;
  readonly ok: boolean;
  /** Milliseconds the step took. */
  readonly ms: number;
  /** What was seen, for people (addresses, certificate subject, instance id …). */
  readonly detail: string;
  readonly failure?: PortcheckFailure;
}

/** One port's outcome. */
export interface PortResult {
  readonly host: string;
  readonly port: number;
  /** The role expected on this port. */
  readonly role: ListenerRole;
  /** Whether this port must pass for the check to pass. */
  readonly required: boolean;
  readonly ok: boolean;
  readonly steps: readonly StepResult[];
  /** The first failure, if any, with its remedy. */
  readonly failure?: { readonly class: PortcheckFailure; readonly step: PortcheckStep; readonly message: string; readonly remedy: string };
}

/** A whole check of one host. */
export interface PortcheckReport {
  readonly host: string;
  readonly startedAt: string;
  readonly durationMs: number;
  /** Every address the name resolved to, and whether any is private. */
  readonly addresses: readonly string[];
  readonly ports: readonly PortResult[];
  /** True when every required port passed. */
  readonly ok: boolean;
}
