/**
 * What `filebus status` shows of the claims extension: who holds which
 * claim since when, after how many failed attempts, and the dead letters.
 * Read from outside without the bus lock: a snapshot, good for a person.
 */
import fs from 'node:fs';
import path from 'node:path';
import { busError, errnoCode } from '../../errors.js';
import { claimPaths, parseClaimName } from './claims.js';

export interface ClaimStatus {
  /** The chunk's id. */
  id: string;
  /** Failed attempts so far. */
  attempts: number;
  /** PIDs holding the claim's flock (from /proc/locks); empty for an orphan, which the next consumer takes over. */
  holders: number[];
  /** Seconds since the claim was taken or last renamed (its ctime). */
  ageSeconds: number;
  size: number;
}

export interface DeadLetterStatus {
  /** The file name in F.dead/: `<id>.<status>.attempts-<n>`. */
  name: string;
  /** The last attempt's status: `exit-3`, `signal-SIGKILL`, `error`. */
  status: string;
  attempts: number;
  size: number;
}

export interface ClaimsStatus {
  claims: ClaimStatus[];
  dead: DeadLetterStatus[];
}

/** The claims and dead letters of the bus at `file`; undefined when it has neither directory. */
export function claimsStatus(file: string): ClaimsStatus | undefined {
  const paths = claimPaths(file);
  const claimNames = list(paths.claims);
  const deadNames = list(paths.dead);
  if (claimNames === undefined && deadNames === undefined) return undefined;
  const locks = flockTable();
  const now = Date.now();
  const claims: ClaimStatus[] = [];
  for (const name of claimNames ?? []) {
    const st = fs.lstatSync(path.join(paths.claims, name), { throwIfNoEntry: false, bigint: true });
    if (!st?.isFile()) continue;
    const { id, attempts } = parseClaimName(name);
    const ageSeconds = Math.max(0, Math.round((now - Number(st.ctimeMs)) / 100) / 10);
    claims.push({ id, attempts, holders: locks.get(lockKey(st.dev, st.ino)) ?? [], ageSeconds, size: Number(st.size) });
  }
  const dead: DeadLetterStatus[] = [];
  for (const name of deadNames ?? []) {
    const st = fs.lstatSync(path.join(paths.dead, name), { throwIfNoEntry: false });
    if (!st?.isFile()) continue;
    const match = /\.([a-z]+-[A-Za-z0-9]+|error)\.attempts-(\d+)$/.exec(name);
    dead.push({ name, status: match?.[1] ?? 'unknown', attempts: Number(match?.[2] ?? 0), size: st.size });
  }
  return { claims, dead };
}

/** A few lines for `formatStatus`. */
export function formatClaims(s: ClaimsStatus): [string, string][] {
  const lines: [string, string][] = [];
  for (const c of s.claims) {
    const who = c.holders.length ? `held by PID ${c.holders.join(', ')}` : 'orphaned (the next consumer takes it over)';
    lines.push(['claim', `${c.id}, ${who} for ${c.ageSeconds} s, ${c.attempts} failed attempts, ${c.size} bytes`]);
  }
  if (s.claims.length === 0) lines.push(['claims', 'none']);
  for (const d of s.dead) lines.push(['dead', `${d.name} (${d.status} after ${d.attempts} attempts, ${d.size} bytes)`]);
  return lines;
}

function list(dir: string): string[] | undefined {
  try {
    return fs.readdirSync(dir).sort();
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw busError('list', dir, error);
  }
}

function lockKey(dev: bigint, ino: bigint): string {
  // Linux's encoding of dev_t (new_decode_dev), as /proc/locks prints it.
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}:${ino}`;
}

/** Holders of granted FLOCK locks by "major:minor:inode" (numbers in decimal). */
function flockTable(): Map<string, number[]> {
  const table = new Map<string, number[]>();
  let text: string;
  try {
    text = fs.readFileSync('/proc/locks', 'utf8');
  } catch {
    return table;
  }
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === '->') continue;
    const [type, , , pid, id] = fields.slice(1);
    if (type !== 'FLOCK' || id === undefined) continue;
    const [maj, min, inode] = id.split(':');
    if (maj === undefined || min === undefined || inode === undefined) continue;
    const key = `${BigInt(`0x${maj}`)}:${BigInt(`0x${min}`)}:${inode}`;
    table.set(key, [...(table.get(key) ?? []), Number(pid)]);
  }
  return table;
}
