/**
 * Trust on a pin: fetch the server's CA certificate over TLS and accept it
 * only if its public key matches the CA pin the installer carried.
 *
 * Before enrollment the agent (and a remote admin CLI) has a pin, not the
 * CA certificate, so Node's chain check cannot run yet. This module does
 * that check by hand, more strictly than the default: some certificate in
 * the presented chain must match the pin, the leaf must be signed by it,
 * be within its validity period, and name the host we dialled. Only then
 * is the CA certificate returned; every later connection verifies the
 * chain normally against it (`ca:` with rejectUnauthorized on).
 */
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { RollcallError } from './errors.js';
import { openTunnel, type ProxyConfig } from './http-proxy.js';
import { parsePin, spkiPin } from './pki.js';

function toPem(raw: Buffer): string {
  const b64 = raw.toString('base64').replace(/(.{64})/g, '$1\n').trimEnd();
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

function chainOf(peer: tls.DetailedPeerCertificate): Buffer[] {
  const chain: Buffer[] = [];
  let cur: tls.DetailedPeerCertificate | undefined = peer;
  while (cur && cur.raw && chain.length < 10) {
    chain.push(cur.raw);
    if (!cur.issuerCertificate || cur.issuerCertificate === cur || cur.issuerCertificate.raw?.equals(cur.raw)) break;
    cur = cur.issuerCertificate;
  }
  return chain;
}

/** Checks a presented chain against a pin; returns the pinned CA's PEM. */
export function verifyChainAgainstPin(chain: readonly Buffer[], pin: string, host: string, now = new Date()): string {
  const wanted = parsePin(pin);
  if (chain.length === 0) throw new RollcallError('TLS_NO_CERTIFICATE', 'the server presented no certificate');
  const pems = chain.map(toPem);
  const caPem = pems.find((p) => spkiPin(p) === wanted);
  if (!caPem) {
    throw new RollcallError('CA_PIN_MISMATCH', `the server's certificate authority does not match the pin ${wanted}; wrong server, or a TLS-intercepting proxy in between`);
  }
  const leaf = new crypto.X509Certificate(pems[0]!);
  const ca = new crypto.X509Certificate(caPem);
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) {
    throw new RollcallError('TLS_UNTRUSTED', 'the server certificate is not signed by the pinned certificate authority');
  }
  if (now < new Date(leaf.validFrom) || now > new Date(leaf.validTo)) {
    throw new RollcallError('TLS_EXPIRED', `the server certificate is not valid now (valid ${leaf.validFrom} to ${leaf.validTo})`);
  }
  const ip = net.isIP(host) ? host : undefined;
  const ok = ip ? leaf.checkIP(ip) : leaf.checkHost(host);
  if (!ok) throw new RollcallError('TLS_NAME_MISMATCH', `the server certificate is not valid for "${host}"`);
  return caPem;
}

/** Connects to host:port, checks the chain against the pin, and returns the CA certificate PEM. */
export async function fetchPinnedCa(host: string, port: number, pin: string, timeoutMs = 10_000, proxy?: ProxyConfig): Promise<string> {
  parsePin(pin);
  const raw = proxy ? await openTunnel(proxy, host, port, timeoutMs) : undefined;
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      ...(raw ? { socket: raw } : {}),
      host,
      port,
      servername: net.isIP(host) ? undefined : host,
      // Chain verification is done by verifyChainAgainstPin below, against the pin, before any byte is sent.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new RollcallError('TIMEOUT', `no TLS handshake with ${host}:${port} within ${timeoutMs} ms`, { retryable: true }));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      try {
        resolve(verifyChainAgainstPin(chainOf(socket.getPeerCertificate(true)), pin, host));
      } catch (err) {
        reject(err);
      } finally {
        socket.end(); // a graceful close_notify, so the server does not log a reset
      }
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
