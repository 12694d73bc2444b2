/**
 * Shell completion in real shells (issue 17, item 9): bash and zsh run in a
 * tmux session of their own, with the script `filebus completion` prints
 * loaded and a `filebus` on PATH that runs dist/bin/filebus.js; the test
 * types a command line, presses Tab and reads the screen. FILEBUS_IMPL=bash
 * is exported in both shells: completion runs in TypeScript all the same.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { cli, filebus, sleep, tempDir } from '../helpers.js';

const has = (command: string) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;

/** One tmux server on a socket of its own, killed after each test. */
const servers = new Set<string>();
afterEach(() => {
  for (const socket of servers) spawnSync('tmux', ['-L', socket, 'kill-server'], { stdio: 'ignore' });
  servers.clear();
});

interface Shell {
  /** Types `text`, then presses Tab `tabs` times. */
  type(text: string, tabs: number): void;
  /** The screen, lines without trailing blanks. */
  screen(): string[];
  /** Waits until `predicate(screen)` holds, or fails showing the screen. */
  waitFor(predicate: (lines: string[]) => boolean, what: string, timeoutMs?: number): Promise<string[]>;
  /** Abandons the line and clears the screen. */
  reset(): Promise<void>;
}

async function startShell(shell: 'bash' | 'zsh'): Promise<Shell> {
  const dir = tempDir();
  const script = filebus(['completion'], { stdin: 'ignore', env: { SHELL: `/bin/${shell}` } });
  expect(await script.exited).toBe(0);
  fs.writeFileSync(path.join(dir, `completion.${shell}`), script.stdout());
  // `filebus` on PATH, as after `npm install -g`.
  fs.writeFileSync(path.join(dir, 'filebus'), `#!/bin/sh\nexec "${process.execPath}" "${cli}" "$@"\n`, { mode: 0o755 });
  const rc = `PS1='$ '\nexport FILEBUS_IMPL=bash\n`;
  let command: string[];
  if (shell === 'bash') {
    fs.writeFileSync(path.join(dir, 'bashrc'), `${rc}source ${dir}/completion.bash\n`);
    command = ['bash', '--noprofile', '--rcfile', path.join(dir, 'bashrc'), '-i'];
  } else {
    // compinit: zsh's completion system, which the script's compdef needs (-u: no questions about the directories, -D: no dump file).
    fs.writeFileSync(path.join(dir, '.zshrc'), `${rc}autoload -Uz compinit && compinit -u -D\nsource ${dir}/completion.zsh\n`);
    command = ['zsh', '-i'];
  }
  const socket = `filebus-test-${process.pid}-${path.basename(dir)}`;
  servers.add(socket);
  const env = { PATH: `${dir}:${process.env.PATH}`, HOME: dir, ZDOTDIR: dir, TERM: 'xterm', LANG: 'C.UTF-8' };
  const tmux = (...args: string[]) => execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8', env });
  tmux('-f', '/dev/null', 'new-session', '-d', '-s', 'test', '-x', '160', '-y', '40', 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...command);

  const screen = () => tmux('capture-pane', '-p', '-t', 'test').split('\n').map((line) => line.trimEnd());
  // Generous: every Tab starts a Node process, which a loaded machine can take seconds over.
  const waitFor = async (predicate: (lines: string[]) => boolean, what: string, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = screen();
      if (predicate(lines)) return lines;
      if (Date.now() > deadline) throw new Error(`${shell}: timed out waiting for ${what}; the screen:\n${lines.filter(Boolean).join('\n')}`);
      await sleep(20);
    }
  };
  const prompt = (lines: string[]) => lines.filter(Boolean).at(-1) === '$';
  await waitFor(prompt, 'the first prompt');
  return {
    type(text, tabs) {
      tmux('send-keys', '-t', 'test', '-l', text);
      for (let i = 0; i < tabs; i++) tmux('send-keys', '-t', 'test', 'Tab');
    },
    screen,
    waitFor,
    async reset() {
      tmux('send-keys', '-t', 'test', 'C-c');
      tmux('send-keys', '-t', 'test', '-l', 'clear');
      tmux('send-keys', '-t', 'test', 'Enter');
      await waitFor((lines) => lines.filter(Boolean).length === 1 && prompt(lines), 'a cleared screen');
    },
  };
}

/** The command line being edited: the last line that starts with the prompt. */
const commandLine = (lines: string[]) => [...lines].reverse().find((line) => line.startsWith('$ '))?.slice(2).trimEnd();

// What is typed, and the line after one Tab.
const completed: Array<[string, string]> = [
  ['filebus --impl b', 'filebus --impl bash'],
  ['filebus --impl bash con', 'filebus --impl bash consumer'],
  ['filebus --impl=bash con', 'filebus --impl=bash consumer'],
  ['filebus --impl=t', 'filebus --impl=typescript'],
  ['filebus --filename=/tmp/x consumer --rep', 'filebus --filename=/tmp/x consumer --replay'],
  ['filebus --filename /tmp/x consumer --rep', 'filebus --filename /tmp/x consumer --replay'],
  ['filebus --no-f', 'filebus --no-file-monitoring'],
  ['filebus --lossless sta', 'filebus --lossless status'],
];
// What is typed, and the candidates listed (sorted) after Tab Tab.
const listed: Array<[string, string[]]> = [
  ['filebus --impl ', ['bash', 'typescript']],
  ['filebus --filename /tmp/x producer --l', ['--lines', '--lossless']],
];

describe.each(['bash', 'zsh'] as const)('%s', (shell) => {
  // Ten command lines, a Node process per Tab: a time limit for a loaded machine, not a speed target.
  test.skipIf(!has('tmux') || !has(shell))('Tab completes commands, options and --impl values; never an error on the line', { timeout: 300_000 }, async () => {
    const sh = await startShell(shell);
    for (const [typed, expected] of completed) {
      await sh.reset();
      sh.type(typed, 1);
      const lines = await sh.waitFor((screen) => commandLine(screen) === expected, `'${typed}' + Tab to give '${expected}'`);
      expect(lines.join('\n')).not.toMatch(/filebus:/);
    }
    for (const [typed, candidates] of listed) {
      await sh.reset();
      // bash lists on the second Tab; zsh on the first (a second would start cycling through them).
      sh.type(typed, shell === 'bash' ? 2 : 1);
      const listing = (screen: string[]) => screen.some((line) => line.trim().split(/\s+/).sort().join(' ') === candidates.join(' '));
      const lines = await sh.waitFor(listing, `'${typed}' + Tab Tab to list ${candidates.join(' ')}`);
      // Only the candidates: no commands instead of them, no error.
      const output = lines.filter((line) => !line.startsWith('$ ')).join('\n');
      expect(output).not.toMatch(/filebus:|producer|consumer|status/);
    }
  });
});
