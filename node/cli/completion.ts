// Shell completion scripts for the CLI's command tree (bash, zsh through bash's, and fish). Words
// that name something in the cluster (a VM, a node, a network, a volume) complete from the
// cluster itself: the script runs `blixard __complete KIND`, a stale read with a short timeout.

export const COMPLETION_SHELLS = ['bash', 'zsh', 'fish'] as const
export type CompletionShell = typeof COMPLETION_SHELLS[number]

/** What a name in the cluster is, as `blixard __complete` takes it. */
export type NameKind = 'vms' | 'nodes' | 'networks' | 'volumes'
export const NAME_KINDS: readonly NameKind[] = ['vms', 'nodes', 'networks', 'volumes']

export interface CompletableCommand {
  /** "vm show", "status" */
  name: string
  /** "blixard vm show VM [--stale]": its first positional says what the next word names */
  usage: string
  flags: string[]
}

/** The flags whose value is a name in the cluster. */
const FLAG_KINDS: Record<string, NameKind> = { '--node': 'nodes', '--to': 'nodes', '--network': 'networks', '--disk': 'volumes' }

/** What the first positional of a command names, from its usage line (null: nothing to look up). */
export function positionalKind (c: CompletableCommand): NameKind | null {
  const words = c.name.split(' ')
  const rest = c.usage.replace(/^blixard /, '').split(' ').slice(words.length)
  const first = (rest[0] ?? '').replace(/^\[|\]$/g, '')
  if (words[1] === 'create') return null
  if (first === 'VM') return 'vms'
  if (first === 'NODE') return 'nodes'
  if (words[0] === 'network' && first === 'NAME') return 'networks'
  if (words[0] === 'volume' && (first === 'NAME' || first.startsWith('VOLUME'))) return 'volumes'
  return null
}

export function completion (shell: CompletionShell, commands: CompletableCommand[], globalFlags: string[]): string {
  return shell === 'fish' ? fish(commands, globalFlags) : shell === 'zsh' ? zsh(commands, globalFlags) : bash(commands, globalFlags)
}

function groups (commands: CompletableCommand[]): { top: string[], subs: Map<string, string[]> } {
  const top = [...new Set(commands.map((c) => c.name.split(' ')[0]))].sort()
  const subs = new Map<string, string[]>()
  for (const c of commands) { const [a, b] = c.name.split(' '); if (b != null) subs.set(a, [...(subs.get(a) ?? []), b]) }
  return { top, subs }
}

function bash (commands: CompletableCommand[], globalFlags: string[]): string {
  const { top, subs } = groups(commands)
  const subCases = [...subs].map(([a, bs]) => `      ${a}) COMPREPLY=( $(compgen -W "${bs.join(' ')}" -- "$cur") ) ;;`).join('\n')
  const flagCases = commands.filter((c) => c.flags.length > 0).map((c) => `      "${c.name}") more="${c.flags.join(' ')}" ;;`).join('\n')
  const byKind = new Map<NameKind, string[]>()
  for (const c of commands) { const k = positionalKind(c); if (k != null) byKind.set(k, [...(byKind.get(k) ?? []), `"${c.name}"`]) }
  const kindCases = [...byKind].map(([k, names]) => `      ${names.join('|')}) kind=${k} ;;`).join('\n')
  const flagKindCases = Object.entries(FLAG_KINDS).map(([f, k]) => `    ${f}) kind=${k} ;;`).join('\n')
  return `# blixard bash completion: source <(blixard completion bash)
_blixard() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  COMPREPLY=()
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${top.join(' ')} help" -- "$cur") ); return
  fi
  local cmd="\${COMP_WORDS[1]}"
  if [ "$COMP_CWORD" -ge 3 ] || [[ "$cur" == --* ]]; then
    case "\${COMP_WORDS[1]} \${COMP_WORDS[2]}" in "${[...subs.keys()].map((a) => `${a} `).join('"*|"')}"*) cmd="\${COMP_WORDS[1]} \${COMP_WORDS[2]}" ;; esac
  fi
  if [[ "$cur" == --* ]]; then
    local more=""
    case "$cmd" in
${flagCases}
    esac
    COMPREPLY=( $(compgen -W "${globalFlags.join(' ')} --help $more" -- "$cur") ); return
  fi
  if [ "$COMP_CWORD" -eq 2 ]; then
    case "\${COMP_WORDS[1]}" in
${subCases}
    esac
    [ -n "\${COMPREPLY[*]}" ] && return
  fi
  local kind=""
  case "$prev" in
${flagKindCases}
  esac
  if [ -z "$kind" ] && [ "$COMP_CWORD" -eq 3 ]; then
    case "$cmd" in
${kindCases}
    esac
  fi
  if [ -n "$kind" ]; then COMPREPLY=( $(compgen -W "$(blixard __complete "$kind" 2>/dev/null)" -- "$cur") ); fi
}
complete -F _blixard blixard
`
}

function zsh (commands: CompletableCommand[], globalFlags: string[]): string {
  return `#compdef blixard
# blixard zsh completion: source <(blixard completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash(commands, globalFlags)}`
}

function fish (commands: CompletableCommand[], globalFlags: string[]): string {
  const { top, subs } = groups(commands)
  const q = (s: string): string => `'${s.replace(/'/g, "\\'")}'`
  const lines = [
    '# blixard fish completion: blixard completion fish | source',
    'complete -c blixard -f',
    '# the words typed so far, without the flags',
    'function __blixard_words; string match -v -- \'-*\' (commandline -opc); end',
    'function __blixard_at --argument-names n; test (count (__blixard_words)) -eq $n; end',
    'function __blixard_cmd; set -l w (__blixard_words); string join \' \' $w[2..3]; end',
    `complete -c blixard -n '__blixard_at 1' -a ${q([...top, 'help'].join(' '))}`
  ]
  for (const [a, bs] of subs) lines.push(`complete -c blixard -n '__blixard_at 2; and test (__blixard_words)[2] = ${a}' -a ${q(bs.join(' '))}`)
  for (const c of commands) {
    const k = positionalKind(c)
    if (k != null) lines.push(`complete -c blixard -n '__blixard_at 3; and test (__blixard_cmd) = \"${c.name}\"' -a '(blixard __complete ${k} 2>/dev/null)'`)
  }
  for (const f of globalFlags) lines.push(`complete -c blixard -l ${f.slice(2)}`)
  for (const [f, k] of Object.entries(FLAG_KINDS)) lines.push(`complete -c blixard -l ${f.slice(2)} -x -a '(blixard __complete ${k} 2>/dev/null)'`)
  return lines.join('\n') + '\n'
}
