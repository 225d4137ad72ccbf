
#compdef metanode

_metanode_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _METANODE_COMPLETE=complete_zsh metanode)
}

compdef _metanode_completion metanode

