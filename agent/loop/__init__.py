"""The optimize loop as a sequence of phases: baseline -> (focus -> trial: propose, review, verdict, commit) x N ->
final. `optimizer` sets a run up and sequences them; the environment, context, typed candidates and stops are what
the phases share; the reviewer hooks (review, interactive) put a person in the loop."""
