# sbatch --parsable --job-name=mobius-0000-host-network --comment=pod default/host-network --output=/scratch/mobius/pods/0000-host-network/job.out --chdir=/scratch/mobius/pods/0000-host-network --nodes=1 --no-requeue --ntasks=1 --cpus-per-task=1 --mem=256M --signal=B:TERM@30
#!/bin/bash
# Mobius job for pod default/host-network (uid 0000-host-network).
# Generated from the pod spec; edits are overwritten.
set -u
POD_DIR=/scratch/mobius/pods/0000-host-network
CTL="$POD_DIR/ctl"
mkdir -p "$CTL/c" "$POD_DIR/logs"
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
# put FILE VALUE: write a control file atomically (readers never see half a value).
put() { printf '%s\n' "$2" >"$CTL/$1.tmp" && mv -f "$CTL/$1.tmp" "$CTL/$1"; }
put node "$(hostname)"
export PATH="$PATH:/usr/sbin:/sbin"
NPROC=$(ulimit -Hu); PID_MAX=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
{ [ "$NPROC" = unlimited ] || [ "$NPROC" -gt "$PID_MAX" ]; } && NPROC=$PID_MAX
NOFILE=$(ulimit -Hn); [ "$NOFILE" = unlimited ] && NOFILE=1048576
cat >"$POD_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$POD_DIR/containers.conf"
PODMAN=(podman --log-level=error)
PULL_LOCKS="${HOME}"/.mobius/pulls
# podman_image IMAGE POLICY LOCK: IMAGE in podman's store per imagePullPolicy (the image step of
# pull_image). One pull per image at a time: under flock on "$PULL_LOCKS/LOCK.lock"; each pull's
# outcome goes to LOCK.last, and a pull that ended while we waited for the lock answers for us.
podman_image() {
  local image=$1 policy=$2 lock="$PULL_LOCKS/$3" asked
  local -a auth=()
  [ -f "$POD_DIR/auth.json" ] && auth=(--authfile "$POD_DIR/auth.json")
  if "${PODMAN[@]}" image exists "$image"; then
    [ "$policy" = Always ] || { echo present; return 0; }
  elif [ "$policy" = Never ]; then
    echo "image $image is not in podman's store and imagePullPolicy is Never" >&2
    return 2
  fi
  mkdir -p "$PULL_LOCKS" || return 1
  printf -v asked '%(%s)T' -1
  (
    flock 9 || exit 1
    fresh= why= t0= out=
    if [ -f "$lock.last" ] && [ "$(stat -c %Y "$lock.last")" -ge "$asked" ]; then
      read -r fresh why <"$lock.last"
    fi
    if [ "$policy" = IfNotPresent ] || [ "$fresh" = ok ]; then
      "${PODMAN[@]}" image exists "$image" && { echo present; exit 0; }
    fi
    if [ "$fresh" = failed ]; then
      echo "$why" >&2
    else
      pulling
      t0=${EPOCHREALTIME/./}
      if out=$("${PODMAN[@]}" pull --quiet "${auth[@]}" "$image" 2>&1 >/dev/null); then
        echo ok >"$lock.last"
        echo "pulled $((${EPOCHREALTIME/./} - t0))"
        exit 0
      fi
      why=$(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1)
      printf 'failed %s\n' "${why:-podman pull failed}" >"$lock.last"
      printf '%s\n' "$out" >&2
    fi
    [ "$policy" = Always ] && "${PODMAN[@]}" image exists "$image" && { echo kept; exit 0; }
    exit 1
  ) 9>>"$lock.lock"
}
SANDBOX=mobius-0000-host-network
SAMPLER=
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  "${PODMAN[@]}" pod rm -f -t 0 --ignore mobius-0000-host-network >/dev/null 2>&1
}
# TERM comes from the kubelet (pod deleted: it leaves the grace period in ctl/grace first)
# or from Slurm (--signal before the time limit, preemption, scancel --signal).
GRACE=30
STOPPED_BY=
on_term() {
  [ -n "$STOPPED_BY" ] && return
  STOPPED_BY=slurm
  if [ -e "$CTL/grace" ]; then STOPPED_BY=kubelet; read -r GRACE <"$CTL/grace"; fi
  put stopping "$(now) $STOPPED_BY"
  "${PODMAN[@]}" pod stop -t "$GRACE" mobius-0000-host-network >/dev/null 2>&1
}
# seconds FORMAT: Slurm's [days-]hours:minutes:seconds (as squeue %L prints) in seconds.
seconds() {
  local d=0 t=$1 h=0 m=0 s=0
  case $t in *-*) d=${t%%-*}; t=${t#*-} ;; esac
  IFS=: read -r a b c <<<"$t"
  if [ -n "$c" ]; then h=$a m=$b s=$c; elif [ -n "$b" ]; then m=$a s=$b; else s=$a; fi
  case "$d$h$m$s" in *[!0-9]*|"") return 1 ;; esac
  echo $((10#$d * 86400 + 10#$h * 3600 + 10#$m * 60 + 10#$s))
}
trap cleanup EXIT
trap on_term TERM INT
"${PODMAN[@]}" pod rm -f -t 0 --ignore mobius-0000-host-network >/dev/null 2>&1
if ! "${PODMAN[@]}" pod create --name mobius-0000-host-network --infra-name mobius-0000-host-network-infra --hostname host-network --network host >"$POD_DIR/sandbox.log" 2>&1 || ! "${PODMAN[@]}" pod start mobius-0000-host-network >>"$POD_DIR/sandbox.log" 2>&1; then
  cat "$POD_DIR/sandbox.log" >&2
  echo "mobius: podman could not create the pod sandbox" >&2
  exit 125
fi
POD_IP=$(hostname -I 2>/dev/null | awk '{print $1}')
put pod.ip "$POD_IP"
put pod.started "$(now)"
usage_sampler() {
  local every=$1 tick page c f line pid p root skip total mem now
  shift
  local -a names=("$@")
  local usage="$POD_DIR/usage"
  mkdir -p "$usage"
  tick=$(getconf CLK_TCK 2>/dev/null || echo 100)
  page=$(getconf PAGESIZE 2>/dev/null || echo 4096)
  local -A last_t=() last_cpu=()
  local nap=
  trap '[ -n "$nap" ] && kill "$nap" 2>/dev/null; exit 0' TERM
  while :; do
    sleep "$every" & nap=$!
    wait "$nap" || return 0
    local -A parent=() cpu=() rss=()
    for f in /proc/[0-9]*/stat; do
      read -r line <"$f" 2>/dev/null || continue
      pid=${line%% *}
      set -f; set -- ${line##*) }; set +f
      [ $# -ge 22 ] || continue
      parent[$pid]=$2 cpu[$pid]=$((${12} + ${13} + ${14} + ${15})) rss[$pid]=${22}
    done
    now=${EPOCHREALTIME/./}
    for c in "${names[@]}"; do
      root= skip=
      if [ -s "$CTL/c/$c.pid" ]; then read -r root <"$CTL/c/$c.pid"
      elif [ -s "$CTL/c/$c.shell" ]; then read -r root skip <"$CTL/c/$c.shell"
      fi
      [ -n "$root" ] && [ -n "${parent[$root]:-}" ] || continue
      total=0 mem=0
      for pid in "${!parent[@]}"; do
        p=$pid
        while [ "$p" != "$root" ] && [ -n "${parent[$p]:-}" ] && [ "$p" -gt 1 ]; do
          case " $skip " in *" $p "*) p=; break ;; esac
          p=${parent[$p]}
        done
        [ "$p" = "$root" ] || continue
        total=$((total + cpu[$pid])) mem=$((mem + rss[$pid]))
      done
      total=$((total * 1000000000 / tick)) mem=$((mem * page))
      printf '%s\n' "$now $total $mem ${last_t[$c]:-0} ${last_cpu[$c]:-0}" >"$usage/$c.tmp" \
        && mv -f "$usage/$c.tmp" "$usage/$c"
      last_t[$c]=$now last_cpu[$c]=$total
    done
  done
}
usage_sampler 15 main </dev/null >/dev/null 2>&1 &
SAMPLER=$!

# cri_log STREAM FILE: stdin -> FILE as CRI log lines "<time> STREAM F|P <text>", one write
# per line (see mobius/pods/logformat.py). TERM is ignored: the reader ends when the container's
# end of the pipe closes, so the container's last words are kept.
cri_log() {
  trap '' TERM INT
  local LC_ALL=C line tag t ts
  export TZ=UTC
  while :; do
    line=
    if IFS= read -r -n 4000 line; then
      if [ "${#line}" -lt 4000 ]; then tag=F; else tag=P; fi
    elif [ -n "$line" ]; then
      tag=P
    else
      break
    fi
    t=${EPOCHREALTIME:-}
    [ -n "$t" ] || printf -v t '%(%s)T.000000' -1
    printf -v ts '%(%Y-%m-%dT%H:%M:%S)T' "${t%.*}"
    printf '%s.%s000Z %s %s %s\n' "$ts" "${t#*.}" "$1" "$tag" "$line"
  done >>"$2"
}
# pull_image NAME STEP...: make container NAME's image ready with the runtime's STEP before
# the container first starts, and say how it went in ctl/c/NAME.pull (mobius.pods.records).
# STEP prints "present", "pulled <µs>" or "kept" (the pull failed; the node's copy is used)
# and exits 0, or says why on stderr and exits 1 (the pull failed) or 2 (not on the node and
# imagePullPolicy is Never); it calls "pulling" when a pull really starts. Failures are retried
# after 10 s, doubling up to 300 s, until the pod stops: as in
# Kubernetes, an image that cannot be pulled keeps the container waiting, it never fails the pod.
pulling() { put "$PULL_RECORD" "pulling $PULL_ATTEMPT $(now)"; }
pull_image() {
  local name=$1 delay=10 began out rc why err line waited
  shift
  PULL_RECORD="c/$name.pull" PULL_ATTEMPT=0
  err=$(mktemp "${TMPDIR:-/tmp}/mobius-pull.XXXXXX") || return 1
  while :; do
    PULL_ATTEMPT=$((PULL_ATTEMPT + 1))
    began=${EPOCHREALTIME/./}
    out=$("$@" 2>"$err" </dev/null)
    rc=$?
    why=
    while IFS= read -r line; do [ -n "${line//[[:space:]]/}" ] && why=$line; done < <(tail -n 5 "$err")
    why=${why//[^[:print:]]/ }
    why=${why:0:500}
    case $rc:$out in
      0:present) put "$PULL_RECORD" "present $PULL_ATTEMPT $(now)"; break ;;
      "0:pulled "*) put "$PULL_RECORD" "pulled $PULL_ATTEMPT $(now) ${out#pulled } $((${EPOCHREALTIME/./} - began))"; break ;;
      0:kept) put "$PULL_RECORD" "kept $PULL_ATTEMPT $(now) $why"; break ;;
      2:*) put "$PULL_RECORD" "absent $PULL_ATTEMPT $(now) $why" ;;
      *) put "$PULL_RECORD" "failed $PULL_ATTEMPT $(now) ${why:-exit status $rc}" ;;
    esac
    waited=0
    while [ "$waited" -lt "$delay" ]; do
      [ -e "$CTL/stopping" ] && { rm -f "$err"; return 1; }
      sleep 1
      waited=$((waited + 1))
    done
    delay=$((delay * 2 > 300 ? 300 : delay * 2))
  done
  rm -f "$err"
}

app_0() {
  local rc restarts=0 delay=10 logs="$POD_DIR/logs/"main pipes= out= err= end= wend= keep= sync=
  mkdir -p "$logs"
  pull_image main podman_image busybox:1.36 IfNotPresent busybox_1.36-ab512471e34f10e894cf || return 1
  while :; do
    put c/main.started "$(now)"
    if pipes=$(mktemp -d "${TMPDIR:-/tmp}/mobius-log.XXXXXX") && mkfifo "$pipes/1" "$pipes/2" "$pipes/end"; then
      # Only the readers hold the write end of end: reading it returns once both are done.
      exec {wend}<>"$pipes/end" {end}<"$pipes/end"
      cri_log stdout "$logs/$restarts.log" <"$pipes/1" {end}<&- & out=$!
      cri_log stderr "$logs/$restarts.log" <"$pipes/2" {end}<&- & err=$!
      rm -f "$CTL/c/main.pid"; put c/main.shell "$BASHPID $out $err"
      # The function holds its stderr pipe open too: when the runtime is a brace group,
      # bash reports a killed child on that pipe, and must not die of SIGPIPE doing so.
      # Opening the stderr FIFO write-only waits until its reader has opened it; only then
      # may the function hold it read-write, or early output could outlive every reader.
      exec {wend}>&- {sync}>"$pipes/2"
      exec {keep}<>"$pipes/2" {sync}>&-
      "${PODMAN[@]}" run --rm --log-driver=passthrough --pod mobius-0000-host-network --name mobius-0000-host-network-main --pull=never --sig-proxy=true --pidfile "$CTL/c/"main.pid --entrypoint '["hostname"]' busybox:1.36 >"$pipes/1" 2>"$pipes/2" </dev/null {end}<&-
      rc=$?
      exec {keep}>&-
      # The readers drain what is left; leftover processes of the container that still
      # hold the pipes get 10 s more (a short wait could cut off a reader slowed by load).
      read -r -t 10 -u "$end" _
      [ $? -gt 128 ] && kill -KILL "$out" "$err" 2>/dev/null
      wait "$out" "$err"
      exec {end}<&-
    else
      echo "mobius: cannot create the log pipes of container main" >&2
      rc=125
    fi
    [ -n "$pipes" ] && rm -rf "$pipes"
    put c/main.exit "$rc $(now)"
    [ -e "$CTL/stopping" ] && return "$rc"
    return "$rc"
    restarts=$((restarts + 1))
    put c/main.last "$rc $(now)"
    put c/main.restarts "$restarts"
    sleep "$delay" & wait $!
    [ -e "$CTL/stopping" ] && return "$rc"
    delay=$((delay * 2 > 300 ? 300 : delay * 2))
  done
}

pids=()
app_0 & pids+=($!)
# wait returns early when a trapped signal arrives: keep waiting until all are done.
for pid in "${pids[@]}"; do
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
done
rc=0
for c in main; do
  code=1; read -r code _ <"$CTL/c/$c.exit" 2>/dev/null
  if [ "$rc" -eq 0 ] && [ "$code" -ne 0 ]; then rc=$code; fi
done
# Stopped by Slurm's warning signal ahead of the time limit: the containers had their grace
# period; now let the limit come, so Slurm records TIMEOUT rather than a normal end.
if [ "$STOPPED_BY" = slurm ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  left=$(seconds "$(squeue -h -j "$SLURM_JOB_ID" -o %L 2>/dev/null)") || left=
  if [ -n "$left" ] && [ "$left" -le $((GRACE + 120)) ]; then
    sleep $((left + 60)) & wait $!
  fi
fi
exit "$rc"
