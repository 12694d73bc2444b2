/**
 * Shell completion, worked out here rather than by yargs: the shell
 * scripts only pass the words of the command line to
 * `filebus --get-yargs-completions` and offer what it prints. It runs in
 * TypeScript whatever the implementation (FILEBUS_IMPL, --impl), reads no
 * FILEBUS_* variable and never fails: a half-typed command line is what it
 * is given, so nothing in it may be taken for a mistake.
 */

/** The flag the scripts call filebus with (yargs' name, so scripts installed from an older filebus keep working). */
export const COMPLETIONS_FLAG = '--get-yargs-completions';

/** What completion needs to know of the command line. */
export interface CompletionSpec {
  /** The commands, in the order offered. */
  readonly commands: readonly string[];
  /** Long options (without `--`) offered before a command is named, or with any command. */
  readonly global: readonly string[];
  /** Long options of each command, offered after it instead of `global`. */
  readonly perCommand: Readonly<Record<string, readonly string[]>>;
  /** Options that take a value (without `--`), with the values when they are a closed set. */
  readonly values: Readonly<Record<string, readonly string[] | undefined>>;
}

/**
 * The candidates for the last of `words` (the program's name first, the
 * word under the cursor last), one per line. Nothing means "no idea":
 * the scripts then complete file names, as for --filename's value.
 */
export function complete(words: readonly string[], spec: CompletionSpec): string[] {
  const typed = words.slice(1);
  const current = typed.at(-1) ?? '';
  const before = joinSplitValues(typed.slice(0, -1));
  const filter = (candidates: readonly string[], partial: string, prefix = '') =>
    candidates.filter((candidate) => candidate.startsWith(partial)).map((candidate) => prefix + candidate);

  // bash splits `--impl=bash` into `--impl`, `=`, `bash` (`=` is in
  // COMP_WORDBREAKS) and replaces only what follows the `=`.
  const last = typed.at(-2);
  if (current === '=' && last?.startsWith('--')) return filter(spec.values[last.slice(2)] ?? [], '');
  if (last === '=' && typed.at(-3)?.startsWith('--')) return filter(spec.values[typed.at(-3)!.slice(2)] ?? [], current);
  // zsh (and bash without `=` in COMP_WORDBREAKS) keeps it one word, and replaces the whole of it.
  const equals = current.indexOf('=');
  if (current.startsWith('--') && equals > 0) return filter(spec.values[current.slice(2, equals)] ?? [], current.slice(equals + 1), current.slice(0, equals + 1));
  const previous = before.at(-1);
  if (previous?.startsWith('--') && !previous.includes('=') && previous.slice(2) in spec.values) {
    return filter(spec.values[previous.slice(2)] ?? [], current);
  }

  const command = commandOf(before, spec);
  if (current.startsWith('-')) {
    const options = command === undefined ? spec.global : spec.perCommand[command] ?? [];
    return filter(options.map((name) => `--${name}`), current);
  }
  if (command === undefined) return filter(spec.commands, current);
  return [];
}

/** `--opt`, `=`, `value` as bash splits them, put back together as `--opt=value`. */
function joinSplitValues(words: readonly string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word === '=' && joined.at(-1)?.startsWith('--')) {
      joined[joined.length - 1] += `=${words[i + 1] ?? ''}`;
      i++;
    } else {
      joined.push(word);
    }
  }
  return joined;
}

/** The command named in `words`, skipping options and the values of those that take one. */
function commandOf(words: readonly string[], spec: CompletionSpec): string | undefined {
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word.startsWith('-')) {
      if (word.startsWith('--') && !word.includes('=') && word.slice(2) in spec.values) i++;
      continue;
    }
    if (spec.commands.includes(word)) return word;
  }
  return undefined;
}

/** The completion script for bash, or for zsh. */
export function completionScript(shell: 'bash' | 'zsh'): string {
  return shell === 'zsh' ? zshScript : bashScript;
}

const bashScript = `###-begin-filebus-completions-###
#
# filebus command completion for bash
#
# Installation: filebus completion >> ~/.bashrc
#
_filebus_yargs_completions()
{
    local IFS=$'\\n'
    # The words up to the one under the cursor; filebus prints one candidate a line.
    COMPREPLY=($(filebus ${COMPLETIONS_FLAG} "\${COMP_WORDS[@]:0:COMP_CWORD+1}" 2>/dev/null))
    # None: -o default completes file names.
    return 0
}
complete -o bashdefault -o default -F _filebus_yargs_completions filebus
###-end-filebus-completions-###
`;

const zshScript = `#compdef filebus
###-begin-filebus-completions-###
#
# filebus command completion for zsh
#
# Installation: filebus completion >> ~/.zshrc
#
_filebus_yargs_completions()
{
  local -a reply
  # The words up to the one under the cursor; filebus prints one candidate a line.
  reply=(\${(f)"$(filebus ${COMPLETIONS_FLAG} "\${(@)words[1,CURRENT]}" 2>/dev/null)"})
  if (( \${#reply} )); then
    compadd -- "\${reply[@]}"
  else
    _files
  fi
}
compdef _filebus_yargs_completions filebus
###-end-filebus-completions-###
`;
