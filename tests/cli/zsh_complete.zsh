# zsh -f zsh_complete.zsh SCRIPT LINE...: for each LINE, the completions zsh offers with SCRIPT
# loaded, one a line, then "--". An interactive zsh on a pseudo-terminal (zpty) types each LINE
# and Tab; compadd is wrapped to print what the completion functions add.
zmodload zsh/zpty
local rc=${TMPDIR:-/tmp}/imgsearchd-zsh.$$ line typed
local -aU hits
mkdir -p $rc
cat > $rc/.zshrc <<RC
PROMPT='' RPROMPT=''
autoload -Uz compinit && compinit -u -D
source ${(q)1}
compadd() { local -a hits; builtin compadd -O hits "\$@"; print -l -- "HIT:"\${^hits}; builtin compadd "\$@" }
finish() { print "DONE:"; zle kill-whole-line }
zle -N finish; bindkey '^X' finish
RC
export ZDOTDIR=$rc
zpty z zsh -i
for typed in "${@[2,-1]}"; do
  hits=()
  zpty -n -w z "$typed"$'\t\x18'
  while zpty -r z line; do
    [[ $line == *HIT:* ]] && hits+=(${${line##*HIT:}%%$'\r'*})
    [[ $line == *DONE:* ]] && break
  done
  print -l -- $hits --
done
zpty -d z
rm -rf $rc
