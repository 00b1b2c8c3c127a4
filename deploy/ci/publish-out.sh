#!/usr/bin/env bash
# Build out/ from services/, prove it, and publish it as one commit on the branch Flux follows
# (docs/gitops.md). Run from the repository root in CI, after `pip install` of nthlayer:
#   deploy/ci/publish-out.sh [REMOTE] [BRANCH]          defaults: origin nthlayer-out
# Needs git, promtool (Debian: prometheus) and kubectl (kustomize). Exits non-zero, publishing nothing,
# when a spec is invalid, out/ is not exactly what the specs produce, or a tool refuses the output.
set -euo pipefail
remote=${1:-origin}
branch=${2:-nthlayer-out}

nthlayer validate --strict services/
nthlayer build
nthlayer build --check                                   # out/ is exactly what services/ produces
shopt -s nullglob
rules=(out/*/prometheus/*.rules.yaml)
tests=(out/*/prometheus/*.test.yaml)
[ ${#rules[@]} -eq 0 ] || promtool check rules "${rules[@]}"
[ ${#tests[@]} -eq 0 ] || promtool test rules "${tests[@]}"
kubectl kustomize out >/dev/null                         # what Flux's kustomize-controller will build

# One commit whose tree is out/ alone, on top of the branch's last one; nothing when out/ did not change.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GIT_INDEX_FILE="$work/index"
git read-tree --empty
git add --force -- out/
tree=$(git write-tree)
unset GIT_INDEX_FILE
parent=()
if git fetch --quiet "$remote" "refs/heads/$branch" 2>/dev/null; then
    if [ "$(git rev-parse 'FETCH_HEAD^{tree}')" = "$tree" ]; then
        echo "publish-out: $branch already holds this out/"
        exit 0
    fi
    parent=(-p FETCH_HEAD)
fi
source_commit=$(git rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
commit=$(git commit-tree "$tree" "${parent[@]}" -m "nthlayer out/ built from $source_commit")
git push --quiet "$remote" "$commit:refs/heads/$branch"
echo "publish-out: $branch is now $commit (out/ of $source_commit)"
