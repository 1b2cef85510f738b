// Shell completion scripts for the CLI's command tree (bash and zsh).
export function completion (shell: 'bash' | 'zsh', commands: string[]): string {
  const top = [...new Set(commands.map((c) => c.split(' ')[0]))].sort()
  const subs = new Map<string, string[]>()
  for (const c of commands) { const [a, b] = c.split(' '); if (b != null) subs.set(a, [...(subs.get(a) ?? []), b]) }
  const cases = [...subs].map(([a, bs]) => `    ${a}) COMPREPLY=( $(compgen -W "${bs.join(' ')}" -- "$cur") ) ;;`).join('\n')
  const bash = `# blixard bash completion: source <(blixard completion bash)
_blixard() {
  local cur=\${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${top.join(' ')} help" -- "$cur") ); return
  fi
  if [ "$COMP_CWORD" -eq 2 ]; then
    case "\${COMP_WORDS[1]}" in
${cases}
    esac
  fi
  if [[ "$cur" == --* ]]; then COMPREPLY=( $(compgen -W "--json --peer --cluster-key --stale --timeout --help" -- "$cur") ); fi
}
complete -F _blixard blixard
`
  if (shell === 'bash') return bash
  return `#compdef blixard
# blixard zsh completion: source <(blixard completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash}`
}
