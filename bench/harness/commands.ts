/**
 * The programs under test and the yardsticks: the compiled filebus CLI, the
 * C anchors (built from ../shared/anchors with its build.sh into the bench's
 * temporary directory), and a check of which optional flags this build of
 * filebus knows.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type Child, type Stdio, childEnv, cli, filebusCommand, root, start as startProcess } from '../../test/support/processes.js';

export { cli, root };

/**
 * Starts `command` in its own process group, so that stopping it also stops
 * whatever it started (a shell pipeline's `cat`s, the C handoff's forked
 * consumer); only the end of its stderr is kept, for error messages.
 */
export function start(command: string, args: string[], options: { stdin?: Stdio; stdout?: Stdio } = {}): Child {
  return startProcess(command, args, { ...options, group: true, stderrLimit: 2000 });
}

export function filebus(args: string[], options?: Parameters<typeof start>[2]): Child {
  return start(...filebusCommand(args), options);
}

export interface Anchors {
  /** `handoff DIR CHUNKS BLOCK`: prints chunks_per_s=... */
  handoff: string;
  /** `mcast --filename F consumer`: a multicast consumer in C. */
  mcast: string;
}

/** The anchors, built; or why not (printed, and their ratios skipped). */
export type AnchorsOrReason = { anchors: Anchors } | { reason: string };

/**
 * Looks for `shared/anchors/build.sh` beside the repository or any folder
 * above it (a worktree sits one level deeper than the main checkout), and
 * builds the anchors into `outDir`.
 */
export function buildAnchors(outDir: string, explicit?: string): AnchorsOrReason {
  const candidates = explicit ? [path.resolve(explicit)] : ancestors(root).map((dir) => path.join(dir, 'shared/anchors'));
  const source = candidates.find((dir) => fs.existsSync(path.join(dir, 'build.sh')));
  if (!source) return { reason: `C anchors not found (looked for build.sh in ${explicit ? candidates[0] : '../shared/anchors and above'}; --anchors DIR)` };
  const built = spawnSync('sh', [path.join(source, 'build.sh'), outDir], { encoding: 'utf8', env: childEnv, timeout: 120_000 });
  if (built.status !== 0) {
    const why = (built.stderr || built.error?.message || `exit ${built.status}`).trim().split('\n').slice(-2).join(' | ');
    return { reason: `C anchors not built (${path.join(source, 'build.sh')}): ${why}` };
  }
  const anchors = { handoff: path.join(outDir, 'handoff'), mcast: path.join(outDir, 'mcast') };
  const missing = Object.values(anchors).filter((f) => !fs.existsSync(f));
  return missing.length ? { reason: `C anchors: build.sh did not make ${missing.join(', ')}` } : { anchors };
}

function ancestors(dir: string): string[] {
  const out: string[] = [];
  for (let d = path.dirname(dir); ; d = path.dirname(d)) {
    out.push(d);
    if (path.dirname(d) === d) return out;
  }
}

/**
 * Whether this build's producer knows `flagArgs` (e.g. ['--lines'] or
 * ['--history', '3']): a multicast producer with empty input is run with them. A usage error
 * (exit 2) naming the flag means the flag is not there yet; anything else
 * going wrong is reported as such.
 */
export function supports(flagArgs: string[], dir: string): { ok: true } | { ok: false; reason: string } {
  const flag = flagArgs[0]!;
  const bus = path.join(dir, `probe${flag.replace(/\W+/g, '-')}`);
  const r = spawnSync(process.execPath, [cli, '--filename', bus, 'producer', ...flagArgs], { input: '', encoding: 'utf8', env: childEnv, timeout: 20_000 });
  if (r.status === 0) return { ok: true };
  const first = (r.stderr ?? '').trim().split('\n')[0] ?? '';
  if (r.status === 2 && first.includes(flag.replace(/^-+/, ''))) return { ok: false, reason: `${flag} not supported by this build` };
  return { ok: false, reason: `${flag} probe failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}: ${first})` };
}
