/**
 * Child processes for the end-to-end tests: the compiled `rollcall` and
 * `rollcall-agent` launchers started as real processes, their output kept
 * for diagnosis, free loopback ports, and waits with deadlines. Every
 * process started here is killed by `killAll()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
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
