import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type TestServer } from '../../test/support/harness.js';
import { rollcallMain } from '../cli.js';
import type { Installer } from '../installer/installers.js';
import { psQuote, shQuote } from '../installer/script-values.js';
import type { SyncRun } from '../storage/msp-store.js';
import { company, writeExport } from './msp-support.js';

const h = new Harness();
afterEach(() => h.cleanup());
const run = promisify(execFile);
type Err = { error: { code: string; message: string } };

/** A server serving small stand-in executables for both platforms. */
async function serverWithBinaries(extra: Record<string, unknown> = {}): Promise<{ s: TestServer; linux: string; windows: string; dir: string }> {
  const dir = await h.tempDir();
  const linux = path.join(dir, 'rollcall-agent');
  const windows = path.join(dir, 'rollcall-agent.exe');
  await fs.writeFile(linux, '#!/bin/sh\necho stand-in\n', { mode: 0o755 });
  await fs.writeFile(windows, 'MZ stand-in');
  const s = await h.startServer({ agentBinary: linux, agentBinaryWindows: windows, ...extra });
  return { s, linux, windows, dir };
}

const sha256 = async (file: string): Promise<string> => crypto.createHash('sha256').update(await fs.readFile(file)).digest('hex');

/** GETs a path on the agent port. */
function agentGet(s: TestServer, p: string): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port: s.server.agentPort, path: p, ca: s.server.pki.ca.certPem }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

describe('agent executable downloads on the agent port', () => {
  it('serves the file with its SHA-256, and the digest alone', async () => {
    const { s, linux, windows } = await serverWithBinaries();
    const got = await agentGet(s, '/agent/linux-x64');
    expect(got.status).toBe(200);
    expect(got.body).toEqual(await fs.readFile(linux));
    expect(got.headers['x-rollcall-sha256']).toBe(await sha256(linux));
    expect((await agentGet(s, '/agent/linux-x64.sha256')).body.toString()).toBe(`${await sha256(linux)}  rollcall-agent\n`);
    expect((await agentGet(s, '/agent/windows-x64.sha256')).body.toString()).toBe(`${await sha256(windows)}  rollcall-agent.exe\n`);
  });

  it('answers 404 AGENT_BINARY_NOT_FOUND, naming the option, when the file is missing or not configured', async () => {
    const s = await h.startServer({ agentBinary: '/nonexistent/rollcall-agent' });
    const missing = await agentGet(s, '/agent/linux-x64');
    expect(missing.status).toBe(404);
    const body = JSON.parse(missing.body.toString()) as Err;
    expect(body.error.code).toBe('AGENT_BINARY_NOT_FOUND');
    expect(body.error.message).toContain('/nonexistent/rollcall-agent');
    const win = JSON.parse((await agentGet(s, '/agent/windows-x64')).body.toString()) as Err;
    expect(win.error.message).toContain('--agent-binary-windows');
    const api = await s.api<Err>('POST', '/api/v1/installers', { target: await s.enrollmentToken(), os: 'linux', servers: [s.agentAddress] });
    expect(api).toMatchObject({ status: 404, body: { error: { code: 'AGENT_BINARY_NOT_FOUND' } } });
    expect((await s.api('GET', '/api/v1/server')).status).toBe(200);
  });
});

describe('POST /api/v1/installers', () => {
  it('makes a fresh token bound to the customer group for a customer', async () => {
    const { s, linux } = await serverWithBinaries({ publicHosts: ['rollcall.example.net', '10.0.0.5'] });
    const file = await writeExport(await h.tempDir(), [company('c1', 'acct-1', 1007, 'Acme')]);
    expect((await s.api<{ run: SyncRun }>('POST', '/api/v1/msp/link', { source: 'file', file })).body.run.outcome).toBe('succeeded');
    const res = await s.api<Installer>('POST', '/api/v1/installers', { target: 'Acme', os: 'linux', ttlSec: 3600 });
    expect(res.status).toBe(201);
    const port = s.server.agentPort;
    expect(res.body).toMatchObject({ tokenCreated: true, groupPath: 'All/Northwind/Acme', servers: [`rollcall.example.net:${port}`, `10.0.0.5:${port}`], sha256: await sha256(linux) });
    const tokens = (await s.api<{ tokens: { id: string; groupPath: string; note: string }[] }>('GET', '/api/v1/enrollment-tokens')).body.tokens;
    expect(tokens.find((t) => t.id === res.body.tokenId)).toMatchObject({ groupPath: 'All/Northwind/Acme', note: 'installer for Acme' });
    expect(res.body.script).toContain(`SERVERS='rollcall.example.net:${port} 10.0.0.5:${port}'`);
    expect(res.body.script).toMatch(/\nENROLL_TOKEN='rce_[A-Za-z0-9_-]{43}'\n/);
    expect(res.body.script).toContain(`CA_PIN='${s.server.pki.caPin}'`);
    expect(s.logs.find((l) => l.msg === 'installer made')).toMatchObject({ tokenCreated: true });
    expect(JSON.stringify(s.logs)).not.toMatch(/rce_[A-Za-z0-9_-]{43}/);
  });

  it('refuses bad input with clear codes and makes no token', async () => {
    const { s } = await serverWithBinaries();
    const token = await s.enrollmentToken();
    const before = (await s.server.storage.enrollTokens.list()).length;
    const cases: [Record<string, unknown>, number, string, string?][] = [
      [{ target: token, os: 'macos' }, 400, 'BAD_REQUEST'],
      [{ target: token, os: 'linux', extra: 1 }, 400, 'BAD_REQUEST'],
      [{ target: token, os: 'linux' }, 409, 'INSTALLER_NO_SERVER', '--public-host'],
      [{ target: token, os: 'linux', servers: ['bad host:1'] }, 400, 'INSTALLER_VALUE_INVALID', 'not host:port'],
      [{ target: token, os: 'linux', servers: ["a';rm -rf /;':2222"] }, 400, 'INSTALLER_VALUE_INVALID'],
      [{ target: token, os: 'linux', servers: ['127.0.0.1:70000'] }, 400, 'INSTALLER_VALUE_INVALID'],
      [{ target: token, os: 'linux', servers: ['127.0.0.1:2222'], proxy: 'http://u:p@proxy:3128\nrm -rf /' }, 400, 'INSTALLER_VALUE_INVALID', 'newline'],
      [{ target: token, os: 'linux', servers: ['127.0.0.1:2222'], proxy: 'socks5://proxy:1080' }, 400, 'INSTALLER_VALUE_INVALID', 'http://'],
      [{ target: `rce_${'A'.repeat(43)}`, os: 'linux', servers: ['127.0.0.1:2222'] }, 401, 'ENROLL_TOKEN_UNKNOWN'],
      [{ target: 'No Such Customer', os: 'windows', servers: ['127.0.0.1:2222'] }, 404, 'CUSTOMER_NOT_FOUND'],
    ];
    for (const [body, status, code, words] of cases) {
      const res = await s.api<Err>('POST', '/api/v1/installers', body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.error.code).toBe(code);
      if (words) expect(res.body.error.message).toContain(words);
    }
    const tokenId = (await s.server.storage.enrollTokens.findBySecret(token))!.id;
    await s.api('POST', `/api/v1/enrollment-tokens/${tokenId}/revoke`, {});
    expect((await s.api<Err>('POST', '/api/v1/installers', { target: token, os: 'linux', servers: ['127.0.0.1:2222'] })).body.error.code).toBe('ENROLL_TOKEN_REVOKED');
    expect((await s.server.storage.enrollTokens.list()).length).toBe(before);
  });

  it('makes a PowerShell script that pins the CA, checks the hash, installs to Program Files and registers a restarting service', async () => {
    const { s, windows } = await serverWithBinaries();
    const token = await s.enrollmentToken('Customers/Win');
    const proxy = "http://d'arcy:it's$(x)`\"@127.0.0.1:8080";
    const res = await s.api<Installer>('POST', '/api/v1/installers', { target: token, os: 'windows', servers: ['192.168.1.10:2222', 'rollcall.example.net:2222'], proxy });
    expect(res.status).toBe(201);
    const ps = res.body.script;
    expect(res.body.filename).toBe('rollcall-install.ps1');
    expect(ps).toContain("$Servers = @('192.168.1.10:2222', 'rollcall.example.net:2222')");
    expect(ps).toContain(`$AgentSha256 = '${(await sha256(windows)).toUpperCase()}'`);
    expect(ps).toContain(`$EnrollToken = '${token}'`);
    expect(ps).toContain("$Proxy = 'http://d''arcy:it''s$(x)`\"@127.0.0.1:8080'");
    expect(ps).toContain(`"proxy": "http://d''arcy:it''s$(x)\`\\"@127.0.0.1:8080"`);
    for (const needle of [
      'Invoke-WebRequest @request',
      "(Get-FileHash -LiteralPath $download -Algorithm SHA256).Hash",
      'if ($got -ne $AgentSha256) { Fail',
      "Join-Path $env:ProgramFiles 'Rollcall Agent'",
      "Join-Path $env:ProgramData 'Rollcall Agent'",
      'New-Service -Name $ServiceName',
      '-StartupType Automatic',
      'sc.exe failure $ServiceName reset= 86400 actions= restart/10000/restart/30000/restart/60000',
      '$root.Thumbprint -eq $caCert.Thumbprint',
      'ServerCertificateValidationCallback = $null',
      '$env:ROLLCALL_AGENT_TOKEN = $EnrollToken',
      'if ($Uninstall) {',
      '& sc.exe delete $ServiceName',
      'param([switch]$Uninstall, [switch]$NoService)',
    ]) {
      expect(ps, needle).toContain(needle);
    }
    expect(ps).toContain(s.server.pki.ca.certPem.replace(/\r\n/g, '\n').trimEnd());
  });

  it('rollcall installer writes the script (mode 0600) and prints where; --out - prints it', async () => {
    const { s } = await serverWithBinaries();
    await s.server.writeLocalCliCredentials();
    const token = await s.enrollmentToken();
    const out = path.join(await h.tempDir(), 'install.sh');
    let text = '';
    const io = { out: (t: string) => (text += `${t}\n`), err: (t: string) => (text += `${t}\n`) };
    expect(await rollcallMain(['installer', token, '--os', 'linux', '--server', s.agentAddress, '--out', out, '--data-dir', s.dataDir], {}, io)).toBe(0);
    expect(text).toContain(`wrote ${out} (linux, group "All/Customers/Test"`);
    expect((await fs.stat(out)).mode & 0o777).toBe(0o600);
    expect(await fs.readFile(out, 'utf8')).toMatch(/^#!\/bin\/sh\n/);
    text = '';
    expect(await rollcallMain(['installer', token, '--os', 'windows', '--server', s.agentAddress, '--out', '-', '--data-dir', s.dataDir], {}, io)).toBe(0);
    expect(text).toMatch(/^# Rollcall agent installer for Windows x64\./);
    text = '';
    expect(await rollcallMain(['installer', token, '--data-dir', s.dataDir], {}, io)).toBe(2);
    expect(text).toContain('--os linux or --os windows');
    text = '';
    expect(await rollcallMain(['installer', token, '--os', 'linux', '--server', 'no port', '--out', '-', '--data-dir', s.dataDir], {}, io)).toBe(6);
    expect(text).toContain('INSTALLER_VALUE_INVALID');
  });
});

describe('quoting for sh and PowerShell', () => {
  const hostile = ["it's", '$(touch /tmp/x)', '`id`', '"double"', "a'b'c", '\\', '$HOME ${PATH}', "''", '!*?[a]{b}', '#comment', ';&|<>'];

  it('round-trips hostile values through a real sh', async () => {
    const script = hostile.map((v) => `printf '%s\\n' ${shQuote(v)}`).join('\n');
    const { stdout } = await run('/bin/sh', ['-c', script]);
    expect(stdout).toBe(hostile.map((v) => `${v}\n`).join(''));
  });

  it('doubles every PowerShell quote character, including the typographic ones', () => {
    expect(psQuote("it's")).toBe("'it''s'");
    // PowerShell also ends a string at U+2018-U+201B: non-ASCII is refused outright.
    expect(() => psQuote('\u2018a\u2019')).toThrow(/non-ASCII/);
    expect(psQuote('$x `y` "z"')).toBe('\'$x `y` "z"\'');
  });

  it('refuses newlines and control characters in both', () => {
    for (const bad of ['a\nb', 'a\rb', 'a\u0000b', 'a\u001bb']) {
      expect(() => shQuote(bad)).toThrow(/newlines, control and non-ASCII characters are not allowed/);
      expect(() => psQuote(bad)).toThrow(/newlines, control and non-ASCII characters are not allowed/);
    }
  });
});
