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
APPTAINER=(apptainer --quiet)
RUN_FLAGS=(--cleanenv --no-eval --no-home --writable-tmpfs)
IMAGE_CACHE="${HOME}"/.mobius/images
LOGIN_ENV=APPTAINER
# Containers get the pod's environment only.
for v in $(compgen -e); do case $v in APPTAINERENV_*|SINGULARITYENV_*) unset "$v" ;; esac; done
# image_ready SOURCE FILE POLICY CONTAINER: "$IMAGE_CACHE/FILE" a SIF of SOURCE per
# imagePullPolicy (the image step of pull_image, mobius.pods.images). One build per image and
# node at a time, under flock: a build that succeeded while we waited is used, one that failed
# answers for us too (FILE.last). The container's registry login, when the kubelet wrote one
# (pull-auth/CONTAINER: username NUL password NUL), goes to the build as <RUNTIME>_DOCKER_*.
image_ready() {
  local src=$1 sif="$IMAGE_CACHE/$2" policy=$3 login="$POD_DIR/pull-auth/$4" asked
  if [ -f "$sif" ]; then
    [ "$policy" = Always ] || { echo present; return 0; }
  elif [ "$policy" = Never ]; then
    echo "mobius: image $src is not in $IMAGE_CACHE and imagePullPolicy is Never" >&2
    return 2
  fi
  printf -v asked '%(%s)T' -1
  (
    flock 9 || exit 1
    fresh= why= user= pass= t0= tmp="$sif.$$.tmp"
    if [ -f "$sif.last" ] && [ "$(stat -c %Y "$sif.last")" -ge "$asked" ]; then
      read -r fresh why <"$sif.last"
    fi
    if [ -f "$sif" ] && { [ "$policy" = IfNotPresent ] || [ "$fresh" = ok ]; }; then
      echo present
      exit 0
    fi
    if [ "$fresh" = failed ]; then
      echo "$why" >&2
    else
      local -a with=()
      if [ -f "$login" ] && { IFS= read -r -d '' user && IFS= read -r -d '' pass; } <"$login"; then
        with=("${LOGIN_ENV}_DOCKER_USERNAME=$user" "${LOGIN_ENV}_DOCKER_PASSWORD=$pass")
      fi
      rm -f "$tmp"
      pulling
      t0=${EPOCHREALTIME/./}
      if env "${with[@]}" "${APPTAINER[@]}" build "$tmp" "$src" </dev/null >&2 2>"$tmp.err" && mv -f "$tmp" "$sif"; then
        echo ok >"$sif.last"
        rm -f "$tmp.err"
        echo "pulled $((${EPOCHREALTIME/./} - t0))"
        exit 0
      fi
      rm -f "$tmp"
      why=$(grep -v '^[[:space:]]*$' "$tmp.err" | tail -n 1)
      cat "$tmp.err" >&2
      rm -f "$tmp.err"
      printf 'failed %s\n' "${why:-$src could not be built}" >"$sif.last"
    fi
    [ -f "$sif" ] && [ "$policy" = Always ] && { echo kept; exit 0; }
    exit 1
  ) 9>"$sif.lock"
}
# stop_containers GRACE: TERM each process the container functions run (apptainer passes it to
# the container), KILL what is left after GRACE seconds, until every function has returned.
stop_containers() {
  local grace=$1 deadline fns pid termed=" "
  case $grace in ''|*[!0-9]*) grace=30 ;; esac
  deadline=$((SECONDS + grace))
  # (exec: with traps set, bash keeps the substitution's subshell, a child of $$ pgrep would see)
  while fns=$(exec pgrep -d, -P $$) && [ -n "$fns" ]; do
    for pid in $(pgrep -P "$fns"); do
      if [ "$SECONDS" -ge "$deadline" ]; then
        kill -KILL "$pid"
      elif [[ $termed != *" $pid "* ]]; then
        kill -TERM "$pid"
        termed+="$pid "
      fi
    done 2>/dev/null
    if [ "$SECONDS" -ge $((deadline + 5)) ]; then
      pkill -KILL -P "$fns"
      return
    fi
    sleep 0.2
  done
}
# with_pid FILE COMMAND...: run COMMAND as a child process whose PID goes to ctl/FILE first (the
# container's process: probes, hooks and the usage sampler find it there).
with_pid() { ( put "$1" "$BASHPID" && exec "${@:2}" ); }
# stop_pid FILE GRACE: TERM the process whose PID is in ctl/FILE, KILL it after GRACE seconds.
stop_pid() {
  local pid= end=$((SECONDS + $2))
  read -r pid <"$CTL/$1" 2>/dev/null && [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while [ -d "/proc/$pid" ]; do
    if [ "$SECONDS" -ge "$end" ]; then kill -KILL "$pid" 2>/dev/null; return 0; fi
    sleep 0.2
  done
}
SANDBOX=mobius-0000-host-network
SAMPLER=
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  rm -f "$IMAGE_CACHE"/*."$$".tmp
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
  stop_containers "$GRACE"
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
if ! command -v "${APPTAINER[0]}" >/dev/null; then
  echo "mobius: apptainer is not on PATH ($PATH)" >&2
  exit 125
fi
if ! mkdir -p "$IMAGE_CACHE"; then
  echo "mobius: cannot create the image cache $IMAGE_CACHE" >&2
  exit 125
fi
# Containers share the node's network: the pod's IP is the node's.
POD_IP=$(hostname -I 2>/dev/null | awk '{print $1}')
[ -n "$POD_IP" ] || POD_IP=$(hostname -i 2>/dev/null | awk '{print $1}')
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
  pull_image main image_ready docker://busybox:1.36 busybox_1.36-ec95dfb0234f2beb2ab9.sif IfNotPresent main || return 1
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
      { with_pid c/main.pid env "${APPTAINER[@]}" exec "${RUN_FLAGS[@]}" "$IMAGE_CACHE"/busybox_1.36-ec95dfb0234f2beb2ab9.sif hostname; } >"$pipes/1" 2>"$pipes/2" </dev/null {end}<&-
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
