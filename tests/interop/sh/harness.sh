# The checks' common output for the shell groups (sourced): `ok NAME` or `not ok NAME: WHY` per
# check, as python/harness.py prints it; tests/interop/run counts the lines.
ran=0
failed=0

# is NAME GOT WANT: passes when the two strings are equal.
is() {
  ran=$((ran + 1))
  if [ "$2" = "$3" ]; then
    echo "ok $1"
  else
    failed=$((failed + 1))
    echo "not ok $1: got '$(printf '%s' "$2" | head -c 200 | tr '\n' ' ')', want '$3'"
  fi
}

# succeeds NAME COMMAND...: passes when the command exits 0; its output is the reason otherwise.
succeeds() {
  local name="$1" out
  shift
  ran=$((ran + 1))
  out="$("$@" 2>&1)"
  local status=$?
  if [ "$status" = 0 ]; then
    echo "ok $name"
  else
    failed=$((failed + 1))
    echo "not ok $name: exit $status from $1: $(printf '%s' "$out" | tail -2 | tr '\n' ' ')"
  fi
}

# fails NAME COMMAND...: passes when the command exits non-zero (a miss, a refused write).
fails() {
  local name="$1"
  shift
  ran=$((ran + 1))
  if "$@" >/dev/null 2>&1; then
    failed=$((failed + 1))
    echo "not ok $name: $1 succeeded, want a failure"
  else
    echo "ok $name"
  fi
}

finish() {
  [ "$failed" = 0 ] && [ "$ran" -gt 0 ]
}
