/**
 * Child processes for the end-to-end tests: the compiled `rollcall` and
 * `rollcall-agent` launchers started as real processes, their output kept
 * for diagnosis, free loopback ports, and waits with deadlines. Every
 * process started here is killed by `killAll()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (the launchers run from here). */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The launcher of the server and admin CLI. */
export const ROLLCALL = path.join(REPO_ROOT, 'scripts', 'rollcall.js');
/** The launcher of the agent CLI. */
export const ROLLCALL_AGENT = path.join(REPO_ROOT, 'scripts', 'rollcall-agent.js');

/** Throws a clear sentence when the compiled code the launchers import is missing. */
export function assertBuilt(): void {
  for (const f of ['dist/server/cli.js', 'dist/agent/cli.js']) {
    if (!existsSync(path.join(REPO_ROOT, f))) throw new Error(`${f} is missing: run "npm run build" first (npm test does)`);
  }
}

/** The environment for children: ours without ROLLCALL_* settings, plus the given ones. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ROLLCALL_')) env[k] = v;
  return { ...env, ...extra };
}

/** A port on 127.0.0.1 that was free when asked (another process may still take it; callers retry). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** How a process ended. */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A started child process with its output. */
export class Proc {
  output = '';
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (c: Buffer) => this.keep(c));
    child.stderr?.on('data', (c: Buffer) => this.keep(c));
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      child.once('error', (err) => {
        this.keep(Buffer.from(`spawn error: ${err.message}\n`));
        this.exit = { code: null, signal: null };
        resolve(this.exit);
      });
    });
  }

  private keep(chunk: Buffer): void {
    this.output += chunk.toString('utf8');
    if (this.output.length > 200_000) this.output = this.output.slice(-100_000);
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Waits for the process to end, with a deadline. */
  async waitExit(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} did not exit within ${timeoutMs} ms\n${this.tail()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a signal if the process still runs. */
  signal(sig: NodeJS.Signals): void {
    if (this.running) this.child.kill(sig);
  }

  /** The last lines of output, for failure messages. */
  tail(lines = 30): string {
    return `--- ${this.name} (${this.exit ? `exited ${JSON.stringify(this.exit)}` : 'running'}) ---\n${this.output.split('\n').slice(-lines).join('\n')}`;
  }
}

/** Starts and tracks processes; `killAll()` ends every one still running. */
export class Processes {
  readonly all: Proc[] = [];

  /** Starts `node script args…` in the repository root. */
  start(name: string, script: string, args: readonly string[], env: Record<string, string> = {}): Proc {
    const child = spawn(process.execPath, [script, ...args], { cwd: REPO_ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = new Proc(name, child);
    this.all.push(proc);
    return proc;
  }

  /** Runs a short command to its end, with a deadline; kills it when the deadline passes. */
  async run(script: string, args: readonly string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, [script, ...args], { cwd: REPO_ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = new Proc(`${path.basename(script)} ${args.slice(0, 2).join(' ')}`, child);
    this.all.push(proc);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    try {
      const exit = await proc.waitExit(timeoutMs);
      return { code: exit.code, stdout, stderr };
    } finally {
      proc.signal('SIGKILL');
    }
  }

  /** Kills every process still running and waits for each to end. */
  async killAll(): Promise<void> {
    await Promise.all(
      this.all.map(async (p) => {
        p.signal('SIGKILL');
        await p.waitExit(5000).catch(() => undefined);
      }),
    );
  }

  /** Output tails of the long-running processes, for a failing test's report. */
  report(): string {
    return this.all
      .filter((p) => !p.name.includes(' '))
      .map((p) => p.tail())
      .join('\n');
  }
}

/** Polls `check` until it returns a value, or throws after the deadline with what was last seen. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs: number, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A server process on fixed loopback ports and a data directory, with a 1 s
 * check-in interval, and the admin CLI against it: the fixture of the
 * end-to-end tests that stop and restart the server under a running agent.
 */
export class ServerFixture {
  /** The server process running now, if any. */
  server: Proc | undefined;

  constructor(
    private readonly procs: Processes,
    readonly dataDir: string,
    readonly ports: { readonly agent: number; readonly console: number },
  ) {}

  /** Starts the server and waits until it listens; retries a start that exits at once (a port still held), up to `attempts`. */
  async start(attempts = 1): Promise<Proc> {
    for (let attempt = 1; ; attempt += 1) {
      const proc = this.procs.start(`server#${this.procs.all.length}`, ROLLCALL, [
        'server', '--data-dir', this.dataDir, '--agent-port', String(this.ports.agent), '--console-port', String(this.ports.console),
        '--listen-host', '127.0.0.1', '--interval', '1', '--log-level', 'warn',
      ]);
      const up = await eventually(async () => (!proc.running ? 'exited' : (await listening(this.ports.agent)) ? 'up' : undefined), 'the server to listen', 20_000, 50);
      if (up === 'up') return (this.server = proc);
      if (attempt >= attempts) throw new Error(`the server did not start\n${proc.tail()}`);
    }
  }

  /** Runs an admin command against this server's data directory; returns its stdout, throws when it fails. */
  async admin(args: readonly string[]): Promise<string> {
    const r = await this.procs.run(ROLLCALL, [...args, '--data-dir', this.dataDir]);
    if (r.code !== 0) throw new Error(`rollcall ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  /** Makes a group and a token for it and enrolls an agent state directory with the agent CLI; returns the device id. */
  async enroll(group: string, stateDir: string): Promise<string> {
    await eventually(() => (existsSync(path.join(this.dataDir, 'cli.json')) ? true : undefined), 'cli.json', 20_000);
    await this.admin(['groups', 'create', group]);
    const token = JSON.parse(await this.admin(['token', 'create', '--group', group, '--json'])) as { token: string; agentCommand: string };
    const pin = /--ca-pin (sha256:[0-9a-f]{64})/.exec(token.agentCommand)![1]!;
    const enrolled = await this.procs.run(ROLLCALL_AGENT, ['enroll', '--server', `127.0.0.1:${this.ports.agent}`, '--ca-pin', pin, '--token', token.token, '--state-dir', stateDir, '--json']);
    if (enrolled.code !== 0) throw new Error(`enrollment failed (${enrolled.code}): ${enrolled.stderr}`);
    return (JSON.parse(enrolled.stdout) as { deviceId: string }).deviceId;
  }
}

/** The agent's status.json now, or undefined while it is not written (or between writes). */
export async function readAgentStatus<T>(stateDir: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(stateDir, 'status.json'), 'utf8')) as T;
  } catch {
    return undefined;
  }
}
