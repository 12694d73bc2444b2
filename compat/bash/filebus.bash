#!/usr/bin/env bash
# filebus, bash implementation: turn an ordinary file into a multicast named
# pipe or, with --back-pressure, a lossless work queue.  The on-disk contract
# (lock, staging file, chunk identity, end-of-stream) is docs/protocol.md; this
# file must stay interoperable with the TypeScript and the original tools.
#
# Needs bash >= 5, coreutils and util-linux (flock; setpriv >= 2.33 so that
# children die with us on SIGKILL); inotifywait is optional.
set -u
# Byte semantics for ${#var} and ${var:o:n}, and a '.' in $EPOCHREALTIME.
export LC_ALL=C

FILEBUS_VERSION=0.1.0
prog=filebus

usage_error() {
	printf '%s: %s (see %s --help)\n' "$prog" "$1" "$prog" >&2
	exit 2
}
die() {
	printf '%s: %s\n' "$prog" "$1" >&2
	exit 1
}
log() { # message [level]
	if ((verbose >= ${2:-1})); then printf '%s: %s\n' "$prog" "$1" >&2; fi
	return 0
}

((BASH_VERSINFO[0] >= 5)) || die "bash >= 5 is required, this is $BASH_VERSION"

print_help() {
	cat <<EOF
usage: $prog [global options] {producer,consumer} [command options]

Turn an ordinary file into a multicast named pipe, or with --back-pressure
into a lossless work queue.  A producer copies its standard input to the bus
in chunks of whole lines; a consumer copies the chunks to standard output.

global options (environment variable in brackets):
  --filename FILE         the bus file [FILEBUS_FILENAME]
  --back-pressure, --lossless
                          each chunk goes to exactly one consumer and a
                          producer waits until it is taken [FILEBUS_BACK_PRESSURE]
  --block-size N          largest chunk in bytes, default 4096 [FILEBUS_BLOCK_SIZE]
  --sleep-interval N      longest wait between checks in seconds, may be
                          fractional, default 0.1 [FILEBUS_SLEEP_INTERVAL]
  --no-file-monitoring    poll only, do not use inotifywait
                          [FILEBUS_NO_FILE_MONITORING]
  --lines                 chunks hold whole lines; always so here [FILEBUS_LINES]
  --null, -0              NUL-terminated records: not in this implementation,
                          use the TypeScript one [FILEBUS_NULL]
  --history N             multicast: a producer also keeps the last N chunks in
                          F.history/, numbered (docs/protocol.md); a consumer
                          here reads F alone, which works on any bus
                          [FILEBUS_HISTORY]
  --impl NAME, --implementation NAME
                          implementation to run; only 'bash' here
  -v, --verbose           log to standard error; repeat for more [FILEBUS_VERBOSE]
  -h, --help              show this help and exit
  -V, --version           show the version and exit

Ranges: --block-size 1 to 1073741824 (1 GiB), --sleep-interval 0 to 3600,
--history 0 to 1000000.  A repeated option takes its last value.  A variable
that does not apply to the command and mode at hand is ignored (FILEBUS_LINES
by a consumer, FILEBUS_HISTORY on a back-pressure bus); a flag that does not
apply is a usage error.  Not in this implementation (use the TypeScript one):
consumer --replay, --producers, --group, --exec, --jobs, --retries and a
command after --; producer --wait-for-groups; the command 'group'.

commands:
  producer [--blocking-read] [--lines]
                          publish standard input on the bus
  consumer                write chunks from the bus to standard output

Exit status: 0 at end of input (producer) or on the end-of-stream chunk
(back-pressure consumer); 1 for a run-time error; 2 for a usage error;
129/130/143 after SIGHUP/SIGINT/SIGTERM; 141 when a consumer's output closes.
Anything but a regular file at F (a directory, a FIFO, a symlink) and a
symlink at F.lock are refused with status 1; F.__new__ is made afresh.

Run '$prog producer --help' or '$prog consumer --help' for details.
EOF
}

print_command_help() {
	case $1 in
	producer)
		cat <<EOF
usage: $prog [global options] producer [--blocking-read] [--lines]

Read standard input and publish it on the bus in chunks of whole lines of at
most --block-size bytes; no line waits longer than --sleep-interval before it
is published.  At end of input publish what is left and exit; with
--back-pressure first wait for the consumers to take every chunk and then
publish the empty end-of-stream chunk.

On SIGHUP, SIGINT or SIGTERM, stop reading, publish everything already read
(with --back-pressure, as the consumers take it), and exit 129/130/143
without an end-of-stream chunk; input not read stays in the pipe.  A second
signal exits at once and says how many bytes read were not published.

options:
  --blocking-read  read input with blocking reads (bash always does)
  --lines          chunks end at line ends (bash always does)
  -h, --help       show this help and exit
EOF
		;;
	consumer)
		cat <<EOF
usage: $prog [global options] consumer

Write every chunk published on the bus to standard output.  In the default
multicast mode every consumer sees the chunks (a slow one may miss some) and
runs until killed.  With --back-pressure each chunk goes to exactly one
consumer, and the consumer that takes the end-of-stream chunk exits 0.

On SIGHUP, SIGINT or SIGTERM a consumer exits 129/130/143, but first
finishes writing a chunk it has begun (and with --back-pressure removes it
from the bus), so its output ends with a whole chunk.  A second signal cuts
that chunk short and says how many of its bytes were not written; with
--back-pressure the chunk then stays on the bus for the next consumer.

options:
  -h, --help  show this help and exit
EOF
		;;
	esac
}

# ---------------------------------------------------------------- options

parse_bool() { # name value -> REPLY=0/1
	case ${2,,} in
	1 | true | yes | on) REPLY=1 ;;
	0 | false | no | off | '') REPLY=0 ;;
	*) usage_error "$1 must be 1/true or 0/false, got '$2'" ;;
	esac
}

# Left unset until the command line sets them; the environment fills in
# the rest afterwards, so a bad variable cannot break an explicit option.
unset filename back_pressure block_size_arg sleep_interval monitoring history_arg
verbose=0
command=
refuse_null() { # how it was asked for
	usage_error "$1: NUL-terminated records need the TypeScript implementation (filebus without --impl bash); this bash one carries text lines only"
}
# Options and commands of the TypeScript implementation that this one lacks:
# a usage error that says where to find them, never a silent difference.
refuse_ts() { # how it was asked for
	usage_error "$1: not in the bash implementation; use the TypeScript one (filebus without --impl bash)"
}
while (($#)); do
	arg=$1
	shift
	opt=$arg has_value=0 value=
	if [[ $arg == --*=* ]]; then
		opt=${arg%%=*} value=${arg#*=} has_value=1
	fi
	case $opt in
	--filename | --block-size | --sleep-interval | --history | --impl | --implementation)
		if ((!has_value)); then
			(($#)) || usage_error "$opt needs a value"
			value=$1
			shift
		fi
		case $opt in
		--filename) filename=$value ;;
		--block-size) block_size_arg=$value block_size_src=--block-size ;;
		--sleep-interval) sleep_interval=$value sleep_interval_src=--sleep-interval ;;
		--history) history_arg=$value history_src=--history ;;
		*) [[ $value == bash ]] || usage_error "$opt: this is the bash implementation, got '$value'" ;;
		esac
		;;
	--back-pressure | --lossless | --lines | --null | --no-file-monitoring | --verbose | --help | --version)
		((!has_value)) || usage_error "$opt takes no value"
		case $opt in
		--back-pressure | --lossless) back_pressure=1 ;;
		--lines) ;; # chunks always hold whole lines here
		--null) refuse_null "$opt" ;;
		--no-file-monitoring) monitoring=0 ;;
		--verbose) ((verbose += 1)) ;;
		--help) print_help && exit 0 ;;
		--version) printf '%s %s (bash)\n' "$prog" "$FILEBUS_VERSION" && exit 0 ;;
		esac
		;;
	-h) print_help && exit 0 ;;
	-V) printf '%s %s (bash)\n' "$prog" "$FILEBUS_VERSION" && exit 0 ;;
	-0) refuse_null "$opt" ;;
	--replay | --producers | --group | --exec | --jobs | --retries | --wait-for-groups) refuse_ts "$opt" ;;
	-*)
		[[ $opt =~ ^-v+$ ]] || usage_error "unknown option '$arg'"
		((verbose += ${#opt} - 1))
		;;
	producer | consumer)
		command=$arg
		break
		;;
	group) refuse_ts "the command '$arg'" ;;
	*) usage_error "unknown command '$arg', expected producer or consumer" ;;
	esac
done
[[ -n $command ]] || usage_error "missing command: producer or consumer"
for arg in "$@"; do
	case $arg in
	-h | --help) print_command_help "$command" && exit 0 ;;
	--blocking-read | --lines) [[ $command == producer ]] || usage_error "unknown option '$arg' for consumer" ;;
	--null | -0) [[ $command == producer ]] && refuse_null "$arg"
		usage_error "unknown option '$arg' for consumer" ;;
	--replay | --producers | --producers=* | --group | --group=* | --exec | --exec=* | --jobs | --jobs=* | --retries | --retries=*)
		[[ $command == consumer ]] && refuse_ts "${arg%%=*}"
		usage_error "unknown option '${arg%%=*}' for producer" ;;
	--wait-for-groups)
		[[ $command == producer ]] && refuse_ts "$arg"
		usage_error "unknown option '$arg' for consumer" ;;
	--)
		[[ $command == consumer ]] && refuse_ts "-- COMMAND (a command to run for each chunk)"
		usage_error "unexpected '--' for producer" ;;
	*) usage_error "unknown option '$arg' for $command" ;;
	esac
done

[[ -v filename ]] || filename=${FILEBUS_FILENAME-}
if [[ ! -v back_pressure ]]; then
	parse_bool FILEBUS_BACK_PRESSURE "${FILEBUS_BACK_PRESSURE-}"
	back_pressure=$REPLY
fi
if [[ ! -v block_size_arg ]]; then
	block_size_arg=${FILEBUS_BLOCK_SIZE:-4096} block_size_src=FILEBUS_BLOCK_SIZE
fi
if [[ ! -v sleep_interval ]]; then
	sleep_interval=${FILEBUS_SLEEP_INTERVAL:-0.1} sleep_interval_src=FILEBUS_SLEEP_INTERVAL
fi
if [[ ! -v monitoring ]]; then
	parse_bool FILEBUS_NO_FILE_MONITORING "${FILEBUS_NO_FILE_MONITORING-}"
	monitoring=$((!REPLY))
	if ((monitoring)) && [[ -n ${FILEBUS_FILE_MONITORING-} ]]; then
		parse_bool FILEBUS_FILE_MONITORING "$FILEBUS_FILE_MONITORING"
		monitoring=$REPLY
	fi
fi
# A variable that does not apply to the role at hand is ignored (one
# environment may serve producers and consumers of both kinds of bus); one
# that asks this role for something bash lacks is a usage error.
if [[ $command == producer ]]; then
	if [[ -n ${FILEBUS_NULL-} ]]; then
		parse_bool FILEBUS_NULL "$FILEBUS_NULL"
		((REPLY == 0)) || refuse_null "FILEBUS_NULL=$FILEBUS_NULL"
	fi
	# Chunks always hold whole lines here, and reads always block; these
	# are only checked.
	parse_bool FILEBUS_LINES "${FILEBUS_LINES-}"
	parse_bool FILEBUS_BLOCKING_READ "${FILEBUS_BLOCKING_READ-}"
	parse_bool FILEBUS_WAIT_FOR_GROUPS "${FILEBUS_WAIT_FOR_GROUPS-}"
	((REPLY == 0)) || refuse_ts "FILEBUS_WAIT_FOR_GROUPS=$FILEBUS_WAIT_FOR_GROUPS"
else
	if [[ -n ${FILEBUS_GROUP-} ]]; then refuse_ts "FILEBUS_GROUP=$FILEBUS_GROUP"; fi
	if [[ -n ${FILEBUS_EXEC-} ]]; then refuse_ts "FILEBUS_EXEC=$FILEBUS_EXEC"; fi
	if [[ -n ${FILEBUS_JOBS-} && ! ${FILEBUS_JOBS} =~ ^0*1$ ]]; then refuse_ts "FILEBUS_JOBS=$FILEBUS_JOBS"; fi
	if ((back_pressure)); then
		# One end-of-stream chunk ends the stream here, as FILEBUS_PRODUCERS=1.
		if [[ -n ${FILEBUS_PRODUCERS-} && ! $FILEBUS_PRODUCERS =~ ^0*1$ ]]; then
			refuse_ts "FILEBUS_PRODUCERS=$FILEBUS_PRODUCERS"
		fi
	else
		parse_bool FILEBUS_REPLAY "${FILEBUS_REPLAY-}"
		((REPLY == 0)) || refuse_ts "FILEBUS_REPLAY=$FILEBUS_REPLAY"
	fi
fi
# Only a multicast producer keeps a history: a consumer finds one by itself
# (here it reads F alone), a back-pressure bus has none.
if [[ ! -v history_arg ]]; then
	history_arg=0 history_src=FILEBUS_HISTORY
	if [[ $command == producer ]] && ((!back_pressure)); then history_arg=${FILEBUS_HISTORY:-0}; fi
fi
if ((verbose == 0)); then
	case ${FILEBUS_VERBOSE-} in
	'' | *[!0-9]*) parse_bool FILEBUS_VERBOSE "${FILEBUS_VERBOSE-}" && verbose=$REPLY ;;
	*) verbose=$((10#$FILEBUS_VERBOSE)) ;;
	esac
fi

[[ -n $filename ]] || usage_error "--filename is required"

# The same ranges as the TypeScript implementation (src/options.ts).
BLOCK_SIZE_MAX=1073741824 # 1 GiB: a chunk is held whole in memory
SLEEP_INTERVAL_MAX=3600   # seconds: the poll is only a safety net
HISTORY_MAX=1000000       # chunks, one file each

# A whole number from min to max into REPLY, or a usage error.  Leading zeros
# are dropped and the length is checked before any arithmetic, so no value
# can overflow.
parse_count() { # source value min max what
	local digits
	[[ $2 =~ ^[0-9]+$ ]] || usage_error "$1 must be a whole number of $5 from $3 to $4, got '$2'"
	digits=${2#"${2%%[!0]*}"}
	if ((${#digits} > ${#4})) || ((10#${digits:-0} < $3 || 10#${digits:-0} > $4)); then
		usage_error "$1 must be a whole number of $5 from $3 to $4, got '$2'"
	fi
	REPLY=$((10#${digits:-0}))
}
parse_count "$block_size_src" "$block_size_arg" 1 "$BLOCK_SIZE_MAX" bytes
block_size=$REPLY
parse_count "$history_src" "$history_arg" 0 "$HISTORY_MAX" chunks
history=$REPLY
if ((history > 0 && back_pressure)); then
	usage_error "$history_src is for multicast buses; a back-pressure bus already delivers every chunk"
fi

# Microseconds, so that deadlines are integer arithmetic on $EPOCHREALTIME.
# At most 4 digits before the point keep it far from overflow.
sleep_int=${sleep_interval%%.*}
sleep_frac=${sleep_interval#"$sleep_int"}
sleep_int=${sleep_int#"${sleep_int%%[!0]*}"}
sleep_frac=${sleep_frac#.}000000
sleep_us=-1
if [[ $sleep_int =~ ^[0-9]{0,4}$ && $sleep_interval =~ ^[0-9]*(\.[0-9]*)?$ && $sleep_interval =~ [0-9] ]]; then
	sleep_us=$((10#${sleep_int:-0} * 1000000 + 10#${sleep_frac:0:6}))
fi
((sleep_us >= 0 && sleep_us <= SLEEP_INTERVAL_MAX * 1000000)) ||
	usage_error "$sleep_interval_src must be a number of seconds from 0 to $SLEEP_INTERVAL_MAX, got '$sleep_interval'"
# Zero would make every wait a busy loop: 1 ms, as the TypeScript one does.
((sleep_us >= 1000)) || sleep_us=1000

F=$filename
lockfile=$F.lock
stage=$F.__new__
base=${F##*/}
if [[ $F == */* ]]; then dir=${F%/*}; else dir=.; fi
dir=${dir:-/}

# ------------------------------------------------------ children, signals
#
# No $(...), <(...) or >(...) below: bash 5.2 parses their text when it
# expands them, and a trapped signal that arrives meanwhile runs its trap
# inside the parser, which fails with a syntax error: the signal is lost and
# `kill` does not stop us.  Output of commands comes back through a pipe or
# a file of our own instead (see make_private_files).

helper_pid=''  # a child we wait for (flock, cat, mv, dd): killed if we are
ino_pid=''     # inotifywait
watch_pid=''   # kills inotifywait once we are gone, where setpriv cannot
ino_fd=''      # its events, one file name a line
ino_partial='' # the start of a line from ino_fd, read before a timeout
sleep_fd=''    # a pipe that never has data: read -t on it is a sleep
io_fd=''       # a pipe for the output of stat and mkdir
spool_fd=''    # a private regular file for the producer's input
private=''     # the directory that held those until they were open
lock_fd=''
# 1 while we hold the lock and F.__new__ may be half written; 2 once the
# rename of a complete F.__new__ onto F has started.
staging=0
chunk_bytes=0 # the size of the chunk being published

# The producer's input: read but not yet published, and the byte its read
# has just taken (not yet in buf).
buf=''
c=''
# 1 while the producer waits for input or for its turn to publish the
# end-of-stream chunk: everything it read is in buf and c and nothing is half
# done, so a signal handler may finish the job itself.
idle=0
# The exit status asked for by a first SIGHUP/SIGINT/SIGTERM to a producer,
# or to a consumer that is writing a chunk out.
stopping=0
# Set by every trapped signal: a `wait` that returns then may only have been
# interrupted, its child still running.
interrupted=0
# A consumer's chunk on its way out: 1 while cat writes it (from
# emit_fd), 2 once it is written whole and a back-pressure consumer removes
# it from the bus.
emitting=0
emit_fd=''

# shellcheck disable=SC2317 # only called from traps
stop_children() {
	local pid
	for pid in $helper_pid $ino_pid $watch_pid; do
		# SIGKILL, not SIGTERM: a child that has been forked but has not yet
		# exec'd its command still runs our trap handlers, which would only
		# note a SIGTERM and lose it at the exec; the wait that follows
		# would then never end (seen: a producer stopped twice just after it
		# started its inotifywait).  Reaped too, so that no zombie outlives
		# us; quietly, as bash may have reaped it already.
		kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	helper_pid='' ino_pid='' watch_pid=''
}
# shellcheck disable=SC2317 # only called from traps
cleanup() {
	stop_children
	if ((staging)); then rm -f -- "$stage"; fi
	if [[ -n $private ]]; then rm -rf -- "$private"; fi
}
# A consumer stops at once, unless it is writing a chunk out: then it
# finishes that chunk first (and a back-pressure consumer removes it from the
# bus), so that its output ends with a whole record and no chunk goes to two
# consumers.  A chunk it has not begun to write stays on the bus.
# A producer publishes every byte it has taken from its input before it
# exits (in back-pressure mode, as the bus takes them; what it never read
# stays in the pipe), but no end-of-stream chunk.  A second signal ends
# either at once, and says what it cut.
# shellcheck disable=SC2317 # only called from traps
on_signal() { # exit status
	interrupted=1
	if ((!stopping)) && { [[ $command == producer ]] || ((emitting)); }; then
		stopping=$1
		if [[ $command == producer ]]; then
			log "signal: publishing the input already read, then exiting"
			# Idle, it has nothing else to finish; otherwise the main loop
			# sees $stopping once the step in progress is done.
			if ((idle)); then stop_producing; fi
		else
			log "signal: finishing the chunk being written, then exiting"
		fi
		return 0
	fi
	trap - EXIT
	if [[ $command == producer ]]; then
		local unpublished=$((${#buf} + ${#c}))
		stop_children
		# A rename that was under way when we stopped it either happened or
		# did not; the staging file tells which.
		if ((staging == 2)) && [[ ! -e $stage && ! -L $stage ]]; then
			unpublished=$((unpublished - chunk_bytes))
		fi
		printf '%s: %s\n' "$prog" "stopped by a second signal: $unpublished bytes read from the input were not published" >&2
	elif ((emitting == 1)); then
		cut_chunk
	fi
	cleanup
	exit "$1"
}
# Second signal while cat writes a chunk out: stop cat and say how much of
# the chunk did not get out.  cat is stopped (SIGSTOP) before it is killed:
# a write to a pipe that a signal interrupts returns what it wrote so far,
# and /proc/PID/io counts it, so wchar of the stopped cat is exactly what
# reached our output.  On a back-pressure bus a chunk written whole is
# removed (the first signal asked for no more); one cut short stays on the
# bus for the next consumer, which gets it whole: at least once.
# shellcheck disable=SC2317 # only called from traps
cut_chunk() {
	local pid=$helper_pid written='' stat='' key value tries=0 size=0
	# Its size only now: a stat for every chunk would cost a fork each.
	if stat_to_reply %s "/dev/fd/$emit_fd"; then size=$REPLY; fi
	if [[ -n $pid ]] && kill -STOP "$pid" 2>/dev/null; then
		# Until it has stopped (T) or exited (Z), its count may still grow.
		while ((tries++ < 200)) && IFS= read -r stat 2>/dev/null <"/proc/$pid/stat"; do
			stat=${stat##*) }
			[[ ${stat:0:1} == [TtZX] ]] && break
			read -r -t 0.005 -u "$sleep_fd" stat
		done
		while read -r key value; do
			if [[ $key == wchar: ]]; then written=$value; fi
		done 2>/dev/null <"/proc/$pid/io"
		kill -KILL "$pid" 2>/dev/null
		kill -CONT "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		helper_pid=''
	fi
	if [[ $written =~ ^[0-9]+$ ]] && ((written >= size)); then
		if ((back_pressure)); then rm -f -- "$F"; fi
		return 0
	fi
	local what='the chunk being written'
	if [[ $written =~ ^[0-9]+$ ]]; then
		what="$((size - written)) of the $size bytes of the chunk being written were not written"
	else
		what="a part of the $size bytes of the chunk being written may not have been written"
	fi
	if ((back_pressure)); then
		what+='; the chunk stays on the bus for the next consumer'
	fi
	printf '%s: stopped by a second signal: %s\n' "$prog" "$what" >&2
}
trap cleanup EXIT
trap 'on_signal 129' HUP
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# SIGKILL, which no trap sees, would leave our children running under init:
# inotifywait until an event in the directory shows it nobody reads its
# FIFO (never, on a quiet one), cat until the reader of our output reads on,
# and meanwhile holding the lock file's descriptor, the lock with it.  The
# children that may block for long therefore run under `setpriv --pdeathsig
# KILL` (util-linux >= 2.33), which the kernel kills when the thread that
# forked them dies: bash, single-threaded, itself.  Not the others (dd reads
# only input that is ready, mv, rm, ln): each setpriv costs an exec.  One
# gap stays: we die between a fork and setpriv's prctl.
orphan_guard=()
if setpriv --pdeathsig KILL -- true 2>/dev/null; then
	orphan_guard=(setpriv --pdeathsig KILL --)
fi

# Anything that may block for long (flock behind a consumer stuck on its
# output, cat into a full pipe) runs in the background so that `wait`, which
# a trapped signal interrupts, keeps us killable; a foreground child would
# delay the trap until it ends.  Being in the background, it also ignores
# the SIGINT of a ^C, which is ours to handle.  `<&0` stops bash from giving
# the job /dev/null as stdin.
run_child() {
	# A trap may run a child of its own while we wait for ours (a first
	# signal to an idle producer publishes what it read, from the trap):
	# that nested call must neither take our child's place nor hide that
	# our wait was interrupted, so both are put back at the end.
	local outer_pid=$helper_pid outer_interrupted=$interrupted pid rc
	"$@" <&0 &
	pid=$! helper_pid=$!
	while :; do
		interrupted=0
		# Quiet: a wait repeated after a trap may find the child gone from
		# bash's tables, which it would report on stderr.  The trap's own
		# output is not redirected by this.
		wait "$pid" 2>/dev/null
		rc=$?
		# A trap that returned (a first signal) ends the wait early, while
		# the child may carry on: wait for it again.  bash keeps the status
		# of a child it reaped meanwhile, so that is its own status, not the
		# trap's 128 + signal.
		((interrupted)) || break
		# But a child that exited just as the signal came may have been
		# reaped while the trap ran with bash still taking it for running:
		# a wait for it then waits for any other child (inotifywait) for
		# ever, holding the lock (seen: a producer signalled as its mv
		# ended).  Gone from the kernel's table, it had finished; its own
		# status is lost, and these children (flock, mv, cat, ln, rm) end
		# well all but always, so it counts as done.
		if ! kill -0 "$pid" 2>/dev/null; then
			rc=0
			break
		fi
	done
	helper_pid=$outer_pid interrupted=$outer_interrupted
	return "$rc"
}

# FIFOs and a spool file in a directory of our own, open for reading and
# writing (so a FIFO never blocks nor ends).  The names go away as soon as
# inotifywait has opened its FIFO: nothing is left to clean up after us.
make_private_files() {
	local tmp try
	for tmp in "${TMPDIR:-/tmp}" /tmp; do
		for try in 1 2 3 4; do
			private=$tmp/filebus.$$.$RANDOM$try
			mkdir -m 700 -- "$private" 2>/dev/null && break 2
			private=''
		done
	done
	[[ -n $private ]] || die "cannot create a private directory in '${TMPDIR:-/tmp}'"
	mkfifo -- "$private/sleep" "$private/io" "$private/events" ||
		die "cannot create FIFOs in '$private'"
	exec {sleep_fd}<>"$private/sleep" {io_fd}<>"$private/io" {spool_fd}<>"$private/spool"
}
drop_private_names() {
	rm -rf -- "$private"
	private=''
}

# stat of $2 in format $1 into REPLY; fails if $2 cannot be stat'ed.  It
# follows symlinks, for /dev/fd/N: callers make sure F is none.
stat_to_reply() {
	stat -L -c "$1" -- "$2" 2>/dev/null 1>&"$io_fd" && IFS= read -r -u "$io_fd" REPLY
}

# ---------------------------------------------------------------- waiting

# One inotifywait for the whole run, on the directory: F itself is replaced
# by every chunk.  Its events are only hints to check the bus early; if it
# dies, reads time out and we are back to polling.
start_monitor() {
	((monitoring)) || return 0
	if ! command -v inotifywait >/dev/null; then
		log "inotifywait not found, polling every ${sleep_interval}s"
		return 0
	fi
	exec {ino_fd}<>"$private/events"
	# Only events on F itself: other files in the directory (another bus,
	# F.lock opened and closed by every process that locks, F.__new__
	# written by every producer) must not wake us.  inotify watches the
	# whole directory, so inotifywait still sees them, but drops them
	# without writing a line, and we sleep on.  The regular expression is
	# matched against the directory and name; since the watch is not
	# recursive, the last path component is the name.  Older versions
	# without --include print every event, which wait_for_bus filters.
	local include=()
	if inotifywait --help 2>&1 <&- | grep -q -e '--include'; then
		local c i escaped=''
		for ((i = 0; i < ${#base}; i++)); do
			c=${base:i:1}
			case $c in
			[\\.\[\]\(\)*+?{}\|^\$]) escaped+="\\$c" ;;
			*) escaped+=$c ;;
			esac
		done
		include=(--include "(^|/)$escaped\$")
	fi
	# And only the events our role waits for (as the TypeScript one asks,
	# docs/protocol.md): a publish is a rename onto F, a take an unlink of
	# it.  Anything else (F written in place, a link) the poll still sees.
	local events=moved_to
	if ((back_pressure)); then
		events=delete
		[[ $command == consumer ]] && events=moved_to,delete
	fi
	"${orphan_guard[@]}" inotifywait -m -e "$events" --format %f "${include[@]}" -- "$dir" \
		</dev/null >"$private/events" 2>&1 &
	ino_pid=$!
	((${#orphan_guard[@]})) || start_watchdog
	# Until the watch is in place events would be lost, so wait for it
	# before the first check of the bus.
	# We hold a write end of its FIFO too, so its death shows as silence,
	# not as end of file.
	# A read that times out returns what it read of a line so far, gone
	# from the FIFO: it is kept and the line completed by the next read
	# (inotifywait may write a message in pieces, and a loaded machine
	# may run us between them).
	local line='' part='' tries=0
	while ((tries++ < 100)); do
		if IFS= read -r -t 0.1 -u "$ino_fd" part; then
			line+=$part
			case $line in
			'Watches established.')
				log "watching $dir with inotifywait (pid $ino_pid)"
				return 0
				;;
			'Setting up watches.') line='' ;;
			*) break ;;
			esac
		else
			line+=$part
			kill -0 "$ino_pid" 2>/dev/null || break
		fi
	done
	log "inotifywait failed (${line:-no answer}), polling every ${sleep_interval}s"
	stop_children
	exec {ino_fd}<&-
	ino_fd=''
}
# Without a parent-death signal: a subshell of ours that kills inotifywait
# within a second of our death, which it sees as its parent changing (not
# as `kill -0 $$` failing: our parent may leave us a zombie).  It only
# sleeps on the FIFO that never has data, and holds the lock file's
# descriptor no longer than inotifywait would.
start_watchdog() {
	local me=$$ ino=$ino_pid
	(
		stat=''
		while IFS= read -r stat <"/proc/$BASHPID/stat" && [[ ${stat##*) } == ?" $me "* ]]; do
			read -r -t 1 -u "$sleep_fd" stat
		done
		kill "$ino" 2>/dev/null
	) </dev/null >/dev/null 2>&1 &
	watch_pid=$!
}

# Polling step without notifications.  In a work queue the other side
# usually answers within milliseconds of our last move, so poll fast right
# after one (see active) and back off to --sleep-interval.
poll_us=$sleep_us
active() { ((!back_pressure)) || poll_us=1000; }

# Return after a notification about F, or after --sleep-interval at most.
wait_for_bus() {
	local wait_us=$sleep_us remaining t line deadline
	if [[ -z $ino_fd ]] && ((poll_us < sleep_us)); then
		wait_us=$poll_us
		poll_us=$((poll_us * 2))
	fi
	deadline=$((${EPOCHREALTIME/./} + wait_us))
	while :; do
		remaining=$((deadline - ${EPOCHREALTIME/./}))
		((remaining > 0)) || break
		printf -v t '%d.%06d' $((remaining / 1000000)) $((remaining % 1000000))
		if [[ -z $ino_fd ]]; then
			read -r -t "$t" -u "$sleep_fd" line
			return 0
		fi
		if ! IFS= read -r -t "$t" -u "$ino_fd" line; then
			ino_partial+=$line # timed out, perhaps within a line
			return 0
		fi
		line=$ino_partial$line ino_partial=''
		[[ $line == "$base" ]] && break # else another file in the directory
	done
	# Events already queued describe changes that the next check sees anyway.
	if [[ -n $ino_fd ]]; then
		while read -r -t 0 -u "$ino_fd" && IFS= read -r -u "$ino_fd" line; do :; done
	fi
	return 0
}

# ------------------------------------------------------------ bus access

# What the non-regular file at $1 is, into REPLY.
describe_file() {
	if [[ -L $1 ]]; then REPLY='a symbolic link (filebus never follows one)'
	elif [[ -d $1 ]]; then REPLY='a directory'
	elif [[ -p $1 ]]; then REPLY='a FIFO'
	elif [[ -S $1 ]]; then REPLY='a socket'
	elif [[ -c $1 ]]; then REPLY='a character device'
	elif [[ -b $1 ]]; then REPLY='a block device'
	else REPLY='something other than a regular file'
	fi
}

# True if F holds a chunk, false if there is none.  Anything at F but a
# regular file (a directory, a FIFO, a symlink planted by someone else) is
# not a bus we can use: one line and exit 1, rather than waiting forever
# or following it.  Each test is a stat of its own and chunks come and go
# between them, so only a test that sees an odd file counts as seeing one.
bus_exists() {
	[[ -f $F && ! -L $F ]] && return 0
	if [[ -L $F || -d $F || -p $F || -S $F || -c $F || -b $F ]]; then
		describe_file "$F"
		die "cannot use '$F': it is $REPLY, not a regular file"
	fi
	[[ -f $F ]] # a chunk that came meanwhile
}

prepare_bus() { # needs_lock
	[[ -n $base ]] || die "'$F' names a directory, not a file"
	if [[ ! -d $dir ]]; then
		[[ -e $dir ]] && die "cannot use '$F': '$dir' is not a directory"
		if ! mkdir -p -- "$dir" 2>&"$io_fd"; then
			local err=''
			IFS= read -r -t 1 -u "$io_fd" err
			die "cannot use '$F': cannot create directory '$dir': ${err##*: }"
		fi
	fi
	# Without search permission every look at F fails as if there were no
	# chunk: a consumer would wait in silence for ever.
	[[ -x $dir ]] || die "cannot use '$F': directory '$dir': permission denied"
	bus_exists || :
	(($1)) || return 0
	[[ -w $dir ]] || die "cannot use '$F': directory '$dir' is not writable: permission denied"
	open_lock_file
	exec {lock_fd}>&-
	lock_fd=''
}

# Open F.lock for writing into lock_fd, never through a symlink: bash has no
# O_NOFOLLOW, so a missing lock file is created with O_EXCL (noclobber),
# which fails on any symlink, and an existing one is opened read-only
# (which creates nothing) and checked before we reopen it for writing
# through /dev/fd, which goes to the file we checked, not to the path.
open_lock_file() {
	local rfd rc what
	while :; do
		if [[ -L $lockfile ]]; then
			die "cannot use '$F': lock file '$lockfile' is a symbolic link, which filebus never follows"
		elif [[ -e $lockfile ]]; then
			[[ -f $lockfile ]] || {
				describe_file "$lockfile"
				die "cannot use '$F': lock file '$lockfile' is $REPLY, not a regular file"
			}
			{ exec {rfd}<"$lockfile"; } 2>/dev/null || die "cannot use '$F': cannot open lock file '$lockfile'"
			what=''
			if [[ -L $lockfile || ! -f /dev/fd/$rfd ]]; then
				what=replaced
			elif ! { exec {lock_fd}>>"/dev/fd/$rfd"; } 2>/dev/null; then
				what='not writable'
			fi
			exec {rfd}<&-
			[[ -z $what ]] && return 0
			[[ $what == replaced ]] && continue # the checks above say by what
			die "cannot use '$F': lock file '$lockfile' is not writable"
		fi
		set -C
		{ exec {lock_fd}>"$lockfile"; } 2>/dev/null
		rc=$?
		set +C
		if ((rc == 0)); then
			[[ ! -L $lockfile && -f /dev/fd/$lock_fd ]] && return 0
			exec {lock_fd}>&-
		fi
		# Created meanwhile by someone else: look again.
		[[ -e $lockfile || -L $lockfile ]] || die "cannot use '$F': cannot create lock file '$lockfile'"
	done
}

# Exclusive flock(2) on F.lock, as flock(1) and the other tools take it.  A
# lock on a lock file that was meanwhile replaced excludes nobody: retry.
lock_bus() {
	local rc
	while :; do
		open_lock_file
		# Uncontended, the lock is ours at once; only a flock that has to
		# wait pays for setpriv.
		if flock --exclusive --nonblock "$lock_fd"; then
			rc=0
		else
			run_child "${orphan_guard[@]}" flock --exclusive "$lock_fd"
			rc=$?
		fi
		# flock killed by a signal sent to our whole process group: the
		# lock is still wanted (a producer publishes what it read first).
		((rc == 0 || rc > 128)) || die "cannot lock '$lockfile'"
		((rc == 0)) && [[ ! -L $lockfile && /dev/fd/$lock_fd -ef $lockfile ]] && return 0
		((rc == 0)) && log "lock file '$lockfile' was replaced, locking again" 2
		exec {lock_fd}>&-
	done
}
# Closing our only descriptor drops the flock; the children that inherited
# it (flock, mv) have all exited by now.
unlock_bus() {
	exec {lock_fd}>&-
	lock_fd=''
}

# ------------------------------------------------------------- producer

# Create F.__new__ afresh under the lock and write the chunk into it.
# Whatever is at that path (a leftover, or a symlink planted by someone who
# can write to the directory) is removed first, and the file is created with
# O_EXCL (noclobber), which never follows a symlink.
stage_chunk() { # bytes
	local fd rc
	if [[ -e $stage || -L $stage ]]; then
		log "removing '$stage' left behind by someone else" 2
		run_child rm -f -- "$stage" 2>/dev/null
	fi
	set -C
	{ exec {fd}>"$stage"; } 2>&"$io_fd"
	rc=$?
	set +C
	if ((rc != 0)); then
		if [[ -e $stage || -L $stage ]]; then
			describe_file "$stage"
			die "cannot create '$stage' afresh: it is $REPLY"
		fi
		io_error
		die "cannot create '$stage': $REPLY"
	fi
	# Only a race with whoever plants files here gets us something else.
	if [[ -L $stage || ! -f /dev/fd/$fd ]]; then
		exec {fd}>&-
		die "cannot create '$stage' afresh: something else took its place"
	fi
	{ printf '%s' "$1" >&"$fd"; } 2>&"$io_fd"
	rc=$?
	exec {fd}>&-
	if ((rc != 0)); then
		io_error
		die "cannot write '$stage': $REPLY"
	fi
}
# The cause in the error message a command or builtin just wrote to io_fd
# ("printf: write error: No space left on device"), in lower case, into
# REPLY; 'unknown error' if it wrote none.
io_error() {
	local line='' last=''
	while read -r -t 0 -u "$io_fd" && IFS= read -r -t 1 -u "$io_fd" line; do last=$line; done
	last=${last##*: }
	REPLY=${last,,}
	REPLY=${REPLY:-unknown error}
}

# Rename F.__new__ onto F.  -T: a directory at F is an error, not a place to
# move into.
rename_stage() {
	local rc
	while :; do
		run_child mv -fT -- "$stage" "$F" 2>/dev/null
		rc=$?
		((rc == 0)) && return 0
		# mv killed by a signal to our process group: rename(2) is atomic,
		# so it either happened or we do it again.
		if ((rc > 128)); then
			[[ -e $stage || -L $stage ]] || return 0
			continue
		fi
		bus_exists || : # names what is in the way, if anything
		die "cannot rename '$stage' to '$F'"
	done
}

# ------------------------------------------------ history (docs/protocol.md)
#
# With --history N a producer also keeps the last N chunks in F.history/,
# as hard links named by a 16-digit sequence number, with the last number
# given in F.history/head; all under the lock.  Consumers here read F only.

hist=$F.history
hist_head=$hist/head
until_tidy=0
seq=0
# The history directory and its head are used through descriptors opened
# once (and checked), named as /proc/$$/fd/N: a path that always resolves
# to the file held, whatever is renamed over F.history afterwards (a link
# to a directory outside the bus, swapped in by anyone who may write the
# bus directory).  hist_dir is that path; empty until opened.
hist_fd='' hist_dir='' head_fd='' head_file=''
# Above 2^53 the TypeScript peer's numbers lose digits; such a head cannot be right.
HISTORY_MAX_SEQ=9007199254740991

history_refuse_odd() { # path what
	if [[ -L $1 ]] || { [[ -e $1 ]] && ! [[ $2 == directory && -d $1 || $2 == file && -f $1 ]]; }; then
		describe_file "$1"
		die "cannot use '$F': '$1' is $REPLY; the history $2 must be a plain $2"
	fi
}

history_close() {
	if [[ -n $head_fd ]]; then exec {head_fd}<&-; fi
	if [[ -n $hist_fd ]]; then exec {hist_fd}<&-; fi
	hist_fd='' hist_dir='' head_fd='' head_file=''
}

# Opens F.history (made if missing) and its head.  bash cannot open without
# following a link, so each open is checked after it, once, by stat: what
# the path names now (not following a link) must be the very file held.
history_open() {
	local ids
	history_close
	history_refuse_odd "$hist" directory
	if [[ ! -d $hist ]] && ! mkdir -- "$hist" 2>/dev/null && [[ ! -d $hist ]]; then
		die "cannot create the history directory '$hist'"
	fi
	{ exec {hist_fd}<"$hist"; } 2>/dev/null || die "cannot open the history directory '$hist'"
	hist_dir=/proc/$$/fd/$hist_fd
	ids=$(stat -c '%d:%i:%F' -- "$hist" && stat -L -c '%d:%i:%F' -- "$hist_dir") || die "cannot look at '$hist'"
	[[ ${ids%%$'\n'*} == "${ids#*$'\n'}" && ${ids%%$'\n'*} == *:directory ]] || history_refuse_odd "$hist" directory
	[[ ${ids%%$'\n'*} == "${ids#*$'\n'}" && ${ids%%$'\n'*} == *:directory ]] || die "'$hist' changed while it was opened; not writing the history"
	# The head: made with O_EXCL (noclobber), which never follows a link,
	# then opened read-only (no O_CREAT) and checked as the directory was.
	if [[ ! -e $hist_dir/head && ! -L $hist_dir/head ]]; then
		(set -C; : >"$hist_dir/head") 2>/dev/null
	fi
	history_refuse_odd "$hist_dir/head" file
	{ exec {head_fd}<"$hist_dir/head"; } 2>/dev/null || die "cannot open '$hist_head'"
	head_file=/proc/$$/fd/$head_fd
	ids=$(stat -c '%d:%i:%F' -- "$hist_dir/head" && stat -L -c '%d:%i:%F' -- "$head_file") || die "cannot look at '$hist_head'"
	[[ ${ids%%$'\n'*} == "${ids#*$'\n'}" && ${ids%%$'\n'*} == *:'regular '* ]] || die "'$hist_head' is not a plain file held by this bus; not writing the history"
}

# Under the lock: F.history must still be the directory held.  A link there
# is refused; another directory (a peer started the history over) is opened.
history_check() {
	if [[ -z $hist_dir ]]; then history_open; return; fi
	history_refuse_odd "$hist" directory
	[[ -d $hist && $hist -ef $hist_dir ]] || history_open
}

# The head's number into REPLY: 0 for an empty head.  One that cannot be
# right (anything after its record, a number above 2^53) is repaired from
# the entries (the listing decides), with one line.
history_read_head() {
	local content=''
	REPLY=0
	IFS= read -r -d '' content <"$head_file"
	[[ -z $content ]] && return 0
	if [[ $content =~ ^([0-9]{1,16})[[:space:]]*$ ]] && ((10#${BASH_REMATCH[1]} <= HISTORY_MAX_SEQ)); then
		REPLY=$((10#${BASH_REMATCH[1]}))
		return 0
	fi
	history_list
	REPLY=${REPLY##* }
	REPLY=$((10#${REPLY:-0}))
	# Truncating: what followed the old record goes.
	{ printf '%016d\n' "$REPLY" >"$head_file"; } 2>/dev/null || die "cannot write '$hist_head'"
	content=${content:0:40}
	printf '%s: %s\n' "$prog" "$hist_head held '${content//$'\n'/\\n}', not a sequence number; repaired from the entries to $REPLY" >&2
}

# In place: a fixed-width write at offset 0 (<> neither truncates nor
# appends), since consumers read it without the lock.
history_write_head() { # seq
	{ printf '%016d\n' "$1" 1<>"$head_file"; } 2>/dev/null
}

# The entries' numbers (16 digits each, ascending) into REPLY, space-separated.
history_list() {
	local name
	REPLY=''
	# Sixteen digits sort as numbers.
	for name in "$hist_dir"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]; do
		[[ -e $name || -L $name ]] && REPLY+=" ${name##*/}"
	done
	REPLY=${REPLY# }
}

# Make the head at least the newest entry (a producer killed after its link
# left one beyond the head); remove the entries that left the window.
history_tidy() {
	local entries name newest=0 old=()
	history_list
	entries=$REPLY
	[[ -n $entries ]] && newest=$((10#${entries##* }))
	history_read_head
	if ((newest > REPLY)); then history_write_head "$newest" || die "cannot write '$hist_head'"; else newest=$REPLY; fi
	for name in $entries; do
		((10#$name > newest - history)) && break
		old+=("$hist_dir/$name")
	done
	if ((${#old[@]})); then run_child rm -f -- "${old[@]}"; fi
	until_tidy=$((history > 64 ? history : 64))
}

# Under the lock, with F.__new__ whole and before its rename: link it as the
# next entry and write the head, so that F never shows a chunk the history
# lacks.  No room for the head: the entry goes again and the publish fails,
# the chunk nowhere, so a retry publishes it once.  The number goes into seq.
history_link() {
	local entry tries=0
	history_check
	if ((--until_tidy <= 0)); then history_tidy; fi
	while :; do
		history_read_head
		seq=$((REPLY + 1))
		printf -v entry '%s/%016d' "$hist_dir" "$seq"
		if run_child ln -- "$stage" "$entry" 2>/dev/null; then
			history_write_head "$seq" && return 0
			run_child rm -f -- "$entry"
			die "cannot write '$hist_head'"
		fi
		# Taken (a producer killed before it wrote the head) or the
		# directory was removed: tidy and take the next number.
		((tries++ < 3)) || die "cannot link '$stage' into the history as '$hist/${entry##*/}'"
		history_open
		history_tidy
	done
}

# After the rename: drop the entry that left the window.
history_advance() {
	local old
	if ((seq - history >= 1)); then
		printf -v old '%s/%016d' "$hist_dir" $((seq - history))
		if [[ -e $old || -L $old ]]; then run_child rm -f -- "$old"; fi
	fi
}

# The one way any chunk, the empty end-of-stream one included, gets out.
# A producer stopped by a signal still publishes its data chunks, but not
# the end-of-stream one: then this returns 1.
publish() { # bytes
	local marker=0
	[[ -n $1 ]] || marker=1
	# Until the end-of-stream chunk is being written, a signal ends us at once.
	idle=$marker
	while :; do
		if ((back_pressure)); then
			while bus_exists; do
				((marker && stopping)) && return 1
				wait_for_bus
			done
		fi
		((marker && stopping)) && return 1
		lock_bus
		idle=0
		# A producer never replaces a chunk that no consumer has taken.
		if bus_exists && ((back_pressure)); then
			unlock_bus
			idle=$marker
			continue
		fi
		if ((marker && stopping)); then
			unlock_bus
			return 1
		fi
		staging=1
		stage_chunk "$1"
		if ((history)); then history_link; fi
		chunk_bytes=${#1} staging=2
		rename_stage
		staging=0
		if ((history)); then history_advance; fi
		unlock_bus
		break
	done
	active
	log "published ${#1} bytes" 2
}

deadline=0 # when the oldest complete line in buf is due, microseconds

# Chunks hold whole lines.  The exception is a line longer than --block-size:
# it is split into --block-size pieces (the first starts a chunk), so that no
# chunk is ever larger than --block-size (docs/protocol.md: "at most").
flush() { # at_end
	local head cut
	while ((${#buf} >= block_size)); do
		head=${buf:0:block_size}
		if [[ $head == *$'\n'* ]]; then cut=${head%$'\n'*}$'\n'; else cut=$head; fi
		publish "$cut"
		buf=${buf:${#cut}}
		# What is left came in with the read just done, near enough.
		deadline=$((${EPOCHREALTIME/./} + sleep_us))
	done
	[[ -n $buf ]] || return 0
	if (($1)); then
		# A last line without a newline goes out as it is.
		publish "$buf"
		buf=''
	elif ((${EPOCHREALTIME/./} >= deadline)) && [[ $buf == *$'\n'* ]]; then
		cut=${buf%$'\n'*}$'\n'
		publish "$cut"
		buf=${buf:${#cut}}
		# An incomplete line left behind gets a new deadline rather than going
		# the moment it is whole: chunks following each other within
		# milliseconds are lost by every multicast consumer.
		deadline=$((${EPOCHREALTIME/./} + sleep_us))
	fi
}

# bash reads a pipe one byte per read(2), far too slow for bulk input.  So
# wait for input with a 1-byte read (which has a timeout), then take whatever
# else is ready with a single dd read of up to 64 KiB into the spool file,
# which mapfile reads back in large blocks: one fork per burst of input
# instead of a syscall per byte.  dd shares our stdin offset, so a regular
# file as input works the same.
produce() {
	local rc remaining t data parts got
	while :; do
		flush 0
		c='' idle=1
		((stopping)) && break
		if [[ $buf == *$'\n'* ]]; then
			# The deadline runs from the oldest buffered line, not from the
			# last input: a steady trickle must not hold lines back.
			remaining=$((deadline - ${EPOCHREALTIME/./}))
			((remaining > 0)) || remaining=1
			printf -v t '%d.%06d' $((remaining / 1000000)) $((remaining % 1000000))
			IFS= read -r -d '' -N 1 -t "$t" c
			rc=$?
		else
			IFS= read -r -d '' -N 1 c
			rc=$?
		fi
		idle=0
		# A read that timed out may still have taken a byte.  c is empty for
		# a NUL byte, which bash cannot hold.
		[[ -n $buf ]] || deadline=$((${EPOCHREALTIME/./} + sleep_us))
		got=$c
		buf+=$c c=''
		if { ((rc == 0)) || [[ -n $got ]]; } && read -r -t 0; then
			# Opening /dev/fd/N opens the spool file afresh: emptied here,
			# appended to by dd, read from its start by mapfile.  Emptied by
			# us, not by dd's redirection, so that a dd that never ran
			# leaves nothing behind to be read twice.
			: >"/dev/fd/$spool_fd"
			run_child dd bs=65536 count=1 status=none >>"/dev/fd/$spool_fd"
			rc=$?
			# Killed by a signal to our process group: keep what it wrote.
			((rc == 0 || rc > 128)) || die "cannot read standard input"
			rc=0
			# NUL bytes split the input into several parts; they are dropped.
			mapfile -d '' -t parts <"/dev/fd/$spool_fd"
			printf -v data '%s' "${parts[@]}"
			buf+=$data
		fi
		((rc > 128)) && continue # timed out: time to flush
		((rc == 0)) || break     # end of input
	done
	if ((stopping)); then stop_producing; fi
	flush 1
	if ((back_pressure)); then
		log "end of input, publishing the end-of-stream chunk"
		publish '' || exit "$stopping"
	fi
}

# After a first signal: publish everything read, without an end-of-stream
# chunk, and exit with the signal's status.  Called from the trap itself
# when the signal came while we waited for input.
stop_producing() {
	idle=0
	buf+=$c c=''
	log "publishing ${#buf} bytes read before the signal" 2
	flush 1
	exit "$stopping"
}

# ------------------------------------------------------------- consumers

# Identity of a chunk: a new chunk is a new file, but inode numbers come back
# quickly, hence the change time (nanoseconds) and size as well.
ID_FORMAT='%d:%i:%z:%s'

# Copy the open chunk on fd $1 to stdout.  If the write
# fails (the reader is gone) exit at once: that drops our lock, if any, and
# leaves F in place for another consumer.  cat killed by SIGPIPE is a quiet
# 141.  A first signal meanwhile waits for the chunk to be written whole
# (see on_signal); emitting stays 1 until the caller is done with it.
emit() {
	emit_fd=$1 emitting=1
	run_child "${orphan_guard[@]}" cat <&"$1" && return 0
	local rc=$?
	((rc > 128)) || rc=1
	exit "$rc"
}
# After a chunk is out (and off a back-pressure bus): exit if a signal came
# while it was written.
emitted() {
	emitting=0 emit_fd=''
	if ((stopping)); then exit "$stopping"; fi
	return 0
}

# A chunk at F that we may not read would look like no chunk at all, and a
# consumer would wait in silence for ever: one line and exit 1 instead.
refuse_unreadable() {
	if [[ -f $F && ! -L $F && ! -r $F ]]; then die "cannot read '$F': permission denied"; fi
	return 0
}

# Lossy and lock-free: emit F whenever its identity changes.  The identity
# of the open file is what we remember, since the bytes come from it.  Only
# a path that looks new is opened: fstat of a chunk that is replaced right
# after the open shows a new change time (its link count dropped) and would
# make it look new once more.
consume_multicast() {
	local last='' fd
	while :; do
		# bus_exists first: never open (and hang on) a FIFO at F, nor
		# follow a symlink there.
		if bus_exists && stat_to_reply "$ID_FORMAT" "$F" && [[ $REPLY != "$last" ]] &&
			{ exec {fd}<"$F"; } 2>/dev/null; then
			# Replaced by something odd since bus_exists: it says so next time.
			if [[ -f /dev/fd/$fd ]] && stat_to_reply "$ID_FORMAT" "/dev/fd/$fd" && [[ $REPLY != "$last" ]]; then
				last=$REPLY
				emit "$fd"
				log "emitted chunk $last" 2
			fi
			exec {fd}<&-
			emitted
		fi # else no new chunk, or a back-pressure consumer just took it
		refuse_unreadable
		wait_for_bus
	done
}

# Lossless: take each chunk under the lock and remove it once written out.
consume_back_pressure() {
	local fd
	while :; do
		if bus_exists; then
			lock_bus
			if bus_exists && { exec {fd}<"$F"; } 2>/dev/null; then
				if [[ ! -f /dev/fd/$fd ]]; then
					# Replaced by something odd since bus_exists: it says so next time.
					exec {fd}<&-
					unlock_bus
					continue
				fi
				if [[ ! -s /dev/fd/$fd ]]; then
					rm -f -- "$F"
					exec {fd}<&-
					unlock_bus
					log "end of stream"
					exit 0
				fi
				# A chunk we could not write out stays for another consumer.
				emit "$fd"
				emitting=2
				rm -f -- "$F"
				exec {fd}<&-
				unlock_bus
				emitted
				active
				log "consumed a chunk" 2
				continue
			fi
			unlock_bus # another consumer took it before we had the lock
			refuse_unreadable
		fi
		wait_for_bus
	done
}

# ------------------------------------------------------------------ main

mode=multicast
((back_pressure)) && mode=back-pressure
log "$command on '$F', $mode mode, block size $block_size, sleep interval ${sleep_interval}s"
if ((history)) && [[ $command == consumer ]]; then
	log "--history $history: the bash consumer does not read the history; it reads F alone, as on any bus"
fi
make_private_files
case $command in
producer)
	prepare_bus 1
	# Only a back-pressure producer ever waits for the bus.
	((back_pressure)) && start_monitor
	drop_private_names
	produce
	;;
consumer)
	prepare_bus "$back_pressure"
	start_monitor
	drop_private_names
	if ((back_pressure)); then consume_back_pressure; else consume_multicast; fi
	;;
esac
exit 0
