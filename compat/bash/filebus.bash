#!/usr/bin/env bash
# filebus, bash implementation: turn an ordinary file into a multicast named
# pipe or, with --back-pressure, a lossless work queue.  The on-disk contract
# (lock, staging file, chunk identity, end-of-stream) is PROTOCOL.md; this
# file must stay interoperable with the TypeScript and the original tools.
#
# Needs bash >= 5, coreutils and util-linux (flock); inotifywait is optional.
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
  --impl NAME, --implementation NAME
                          implementation to run; only 'bash' here
  -v, --verbose           log to standard error; repeat for more [FILEBUS_VERBOSE]
  -h, --help              show this help and exit
  --version               show the version and exit

commands:
  producer [--blocking-read]  publish standard input on the bus
  consumer                    write chunks from the bus to standard output

Run '$prog producer --help' or '$prog consumer --help' for details.
EOF
}

print_command_help() {
	case $1 in
	producer)
		cat <<EOF
usage: $prog [global options] producer [--blocking-read]

Read standard input and publish it on the bus in chunks of whole lines of at
most --block-size bytes; no line waits longer than --sleep-interval before it
is published.  At end of input publish what is left and exit; with
--back-pressure first wait for the consumers to take every chunk and then
publish the empty end-of-stream chunk.

options:
  --blocking-read  read input with blocking reads (bash always does)
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

filename=${FILEBUS_FILENAME-}
back_pressure=0
parse_bool FILEBUS_BACK_PRESSURE "${FILEBUS_BACK_PRESSURE-}" && back_pressure=$REPLY
block_size_arg=${FILEBUS_BLOCK_SIZE:-4096}
block_size_src=FILEBUS_BLOCK_SIZE
sleep_interval=${FILEBUS_SLEEP_INTERVAL:-0.1}
sleep_interval_src=FILEBUS_SLEEP_INTERVAL
monitoring=1
parse_bool FILEBUS_NO_FILE_MONITORING "${FILEBUS_NO_FILE_MONITORING-}"
((REPLY)) && monitoring=0
if [[ -n ${FILEBUS_FILE_MONITORING-} ]]; then
	parse_bool FILEBUS_FILE_MONITORING "$FILEBUS_FILE_MONITORING"
	((REPLY)) || monitoring=0
fi
case ${FILEBUS_VERBOSE-} in
'') verbose=0 ;;
*[!0-9]*) parse_bool FILEBUS_VERBOSE "$FILEBUS_VERBOSE" && verbose=$REPLY ;;
*) verbose=$((10#$FILEBUS_VERBOSE)) ;;
esac

command=
while (($#)); do
	arg=$1
	shift
	opt=$arg has_value=0 value=
	if [[ $arg == --*=* ]]; then
		opt=${arg%%=*} value=${arg#*=} has_value=1
	fi
	case $opt in
	--filename | --block-size | --sleep-interval | --impl | --implementation)
		if ((!has_value)); then
			(($#)) || usage_error "$opt needs a value"
			value=$1
			shift
		fi
		case $opt in
		--filename) filename=$value ;;
		--block-size) block_size_arg=$value block_size_src=--block-size ;;
		--sleep-interval) sleep_interval=$value sleep_interval_src=--sleep-interval ;;
		*) [[ $value == bash ]] || usage_error "$opt: this is the bash implementation, got '$value'" ;;
		esac
		;;
	--back-pressure | --lossless | --no-file-monitoring | --verbose | --help | --version)
		((!has_value)) || usage_error "$opt takes no value"
		case $opt in
		--back-pressure | --lossless) back_pressure=1 ;;
		--no-file-monitoring) monitoring=0 ;;
		--verbose) ((verbose += 1)) ;;
		--help) print_help && exit 0 ;;
		--version) printf '%s %s (bash)\n' "$prog" "$FILEBUS_VERSION" && exit 0 ;;
		esac
		;;
	-h) print_help && exit 0 ;;
	-v | -vv | -vvv) ((verbose += ${#opt} - 1)) ;;
	-*) usage_error "unknown option '$arg'" ;;
	producer | consumer)
		command=$arg
		break
		;;
	*) usage_error "unknown command '$arg', expected producer or consumer" ;;
	esac
done
[[ -n $command ]] || usage_error "missing command: producer or consumer"
for arg in "$@"; do
	case $arg in
	-h | --help) print_command_help "$command" && exit 0 ;;
	--blocking-read) [[ $command == producer ]] || usage_error "unknown option '$arg' for consumer" ;;
	*) usage_error "unknown option '$arg' for $command" ;;
	esac
done

[[ -n $filename ]] || usage_error "--filename is required"
# At most 15 digits keeps the arithmetic below far from 64-bit overflow.
if ! [[ $block_size_arg =~ ^[0-9]{1,15}$ ]] || ((10#$block_size_arg == 0)); then
	usage_error "$block_size_src must be a positive integer, got '$block_size_arg'"
fi
block_size=$((10#$block_size_arg))
[[ $sleep_interval =~ ^([0-9]{1,9})?(\.[0-9]*)?$ && $sleep_interval =~ [0-9] ]] ||
	usage_error "$sleep_interval_src must be a non-negative number of seconds, got '$sleep_interval'"
# Microseconds, so that deadlines are integer arithmetic on $EPOCHREALTIME.
sleep_frac=${sleep_interval#"${sleep_interval%%.*}"}
sleep_frac=${sleep_frac#.}000000
sleep_int=${sleep_interval%%.*}
sleep_us=$((10#${sleep_int:-0} * 1000000 + 10#${sleep_frac:0:6}))

F=$filename
lockfile=$F.lock
stage=$F.__new__
base=${F##*/}
if [[ $F == */* ]]; then dir=${F%/*}; else dir=.; fi
dir=${dir:-/}

# ------------------------------------------------------ children, signals

helper_pid= # a child we wait for (flock, cat); killed if we are
ino_fd='' ino_pid=''
sleep_fd=
lock_fd=
staging=0 # 1 while we hold the lock and F.__new__ may be half written

# shellcheck disable=SC2317 # only called from traps
cleanup() {
	if [[ -n $helper_pid ]]; then kill "$helper_pid" 2>/dev/null; fi
	if [[ -n $ino_pid ]]; then kill "$ino_pid" 2>/dev/null; fi
	if ((staging)); then rm -f -- "$stage"; fi
}
# shellcheck disable=SC2317 # only called from traps
on_signal() {
	trap - EXIT
	cleanup
	exit "$1"
}
trap cleanup EXIT
trap 'on_signal 129' HUP
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# Anything that may block for long (flock behind a consumer stuck on its
# output, cat into a full pipe) runs in the background so that `wait`, which
# a trapped signal interrupts, keeps us killable; a foreground child would
# delay the trap until it ends.  `<&0` stops bash from giving the job
# /dev/null as stdin.
run_child() {
	"$@" <&0 &
	helper_pid=$!
	wait "$helper_pid"
	local rc=$?
	helper_pid=
	return "$rc"
}

# ---------------------------------------------------------------- waiting

# One inotifywait for the whole run, on the directory: F itself is replaced
# by every chunk.  Its events are only hints to check the bus early.
start_monitor() {
	((monitoring)) || return 0
	if ! command -v inotifywait >/dev/null; then
		log "inotifywait not found, polling every ${sleep_interval}s"
		return 0
	fi
	exec {ino_fd}< <(exec inotifywait -m -e create,moved_to,delete,moved_from,close_write \
		--format %f -- "$dir" </dev/null 2>&1)
	ino_pid=$!
	# Until the watch is in place events would be lost, so wait for it
	# before the first check of the bus.
	local line=
	while IFS= read -r -t 10 -u "$ino_fd" line; do
		case $line in
		'Watches established.')
			log "watching $dir with inotifywait (pid $ino_pid)"
			return 0
			;;
		'Setting up watches.') ;;
		*) break ;;
		esac
	done
	log "inotifywait failed (${line:-no answer}), polling every ${sleep_interval}s"
	stop_monitor
}
stop_monitor() {
	exec {ino_fd}<&-
	kill "$ino_pid" 2>/dev/null
	ino_fd='' ino_pid=''
}

# Sleep without forking: read from a pipe that we hold the write end of, so
# it never has data nor end of file, and the timeout is the sleep.
if ! { exec {sleep_fd}<> <(:); } 2>/dev/null; then sleep_fd=; fi

# Return after a notification about F, or after --sleep-interval at most.
wait_for_bus() {
	local deadline=$((${EPOCHREALTIME/./} + sleep_us)) remaining t line rc
	while :; do
		remaining=$((deadline - ${EPOCHREALTIME/./}))
		((remaining > 0)) || break
		printf -v t '%d.%06d' $((remaining / 1000000)) $((remaining % 1000000))
		if [[ -n $ino_fd ]]; then
			IFS= read -r -t "$t" -u "$ino_fd" line
			rc=$?
			if ((rc == 0)); then
				[[ $line == "$base" ]] && break
				continue # another file in the directory
			fi
			((rc > 128)) && return 0 # timed out
			log "inotifywait ended, polling every ${sleep_interval}s"
			stop_monitor
		elif [[ -n $sleep_fd ]]; then
			read -r -t "$t" -u "$sleep_fd" line
			return 0
		else
			sleep "$t"
			return 0
		fi
	done
	# Events already queued describe changes that the next check sees anyway.
	if [[ -n $ino_fd ]]; then
		while read -r -t 0 -u "$ino_fd" && IFS= read -r -u "$ino_fd" line; do :; done
	fi
	return 0
}

# ------------------------------------------------------------ bus access

prepare_bus() { # needs_lock
	[[ -n $base ]] || die "'$F' names a directory, not a file"
	if [[ ! -d $dir ]]; then
		[[ -e $dir ]] && die "cannot use '$F': '$dir' is not a directory"
		local err
		err=$(mkdir -p -- "$dir" 2>&1) ||
			die "cannot use '$F': cannot create directory '$dir': ${err##*: }"
	fi
	[[ -d $F ]] && die "cannot use '$F': it is a directory"
	[[ -p $F ]] && die "cannot use '$F': it is a FIFO, not a regular file"
	[[ -e $F && ! -f $F ]] && die "cannot use '$F': it is not a regular file"
	(($1)) || return 0
	[[ -w $dir && -x $dir ]] || die "cannot use '$F': directory '$dir' is not writable"
	[[ -d $lockfile ]] && die "cannot use '$F': lock file '$lockfile' is a directory"
	local fd
	if ! { exec {fd}>>"$lockfile"; } 2>/dev/null; then
		[[ -e $lockfile ]] && die "cannot use '$F': lock file '$lockfile' is not writable"
		die "cannot use '$F': cannot create lock file '$lockfile'"
	fi
	exec {fd}>&-
}

# Exclusive flock(2) on F.lock, as flock(1) and the other tools take it.  A
# lock on a lock file that was meanwhile replaced excludes nobody: retry.
lock_bus() {
	while :; do
		{ exec {lock_fd}>>"$lockfile"; } 2>/dev/null || die "cannot open lock file '$lockfile'"
		run_child flock --exclusive "$lock_fd" || die "cannot lock '$lockfile'"
		[[ /dev/fd/$lock_fd -ef $lockfile ]] && return 0
		log "lock file '$lockfile' was replaced, locking again" 2
		exec {lock_fd}>&-
	done
}
# Closing our only descriptor drops the flock; the children that inherited
# it (flock, mv) have all exited by now.
unlock_bus() {
	exec {lock_fd}>&-
	lock_fd=
}

bus_exists() { [[ -e $F || -L $F ]]; }

# ------------------------------------------------------------- producer

chunk=()    # pieces of the next chunk, joined only when it is written
chunk_len=0 # its length in bytes
deadline=0  # when the oldest line in it must be published, microseconds

# The one way any chunk, the empty end-of-stream one included, gets out.
publish() {
	while :; do
		if ((back_pressure)); then
			while bus_exists; do wait_for_bus; done
		fi
		lock_bus
		# A producer never replaces a chunk that no consumer has taken.
		if ((back_pressure)) && bus_exists; then
			unlock_bus
			continue
		fi
		staging=1
		{ printf '%s' "${chunk[@]}" >"$stage"; } 2>/dev/null ||
			die "cannot write '$stage'"
		mv -f -- "$stage" "$F" || die "cannot rename '$stage' to '$F'"
		staging=0
		unlock_bus
		break
	done
	log "published $chunk_len bytes" 2
	chunk=()
	chunk_len=0
}

# Chunks hold whole lines.  A line longer than --block-size is the exception:
# it starts a chunk of its own and is split into --block-size pieces, so that
# no chunk is ever larger than --block-size (PROTOCOL.md: "at most").
add_text() {
	local text=$1 n=${#1} off=0 take
	while ((off < n)); do
		if ((chunk_len > 0 && chunk_len + n - off > block_size)); then
			publish
			continue
		fi
		take=$((n - off))
		((take <= block_size - chunk_len)) || take=$((block_size - chunk_len))
		((chunk_len)) || deadline=$((${EPOCHREALTIME/./} + sleep_us))
		chunk+=("${text:off:take}")
		((chunk_len += take, off += take))
		((chunk_len < block_size)) || publish
	done
}

produce() {
	local line pending='' rc remaining t
	while :; do
		if ((chunk_len)); then
			# The deadline runs from the oldest buffered line, not from the
			# last input: a steady trickle must not hold lines back.
			remaining=$((deadline - ${EPOCHREALTIME/./}))
			if ((remaining <= 0)); then
				publish
				continue
			fi
			printf -v t '%d.%06d' $((remaining / 1000000)) $((remaining % 1000000))
			IFS= read -r -t "$t" line
			rc=$?
		else
			IFS= read -r line
			rc=$?
		fi
		if ((rc == 0)); then
			add_text "$pending$line"$'\n'
			pending=
		elif ((rc > 128)); then
			# Timed out: read kept the start of a line; it waits for its end.
			pending+=$line
		else
			# End of input; a last line without newline goes out as it is.
			pending+=$line
			[[ -z $pending ]] || add_text "$pending"
			break
		fi
	done
	((chunk_len == 0)) || publish
	if ((back_pressure)); then
		log "end of input, publishing the end-of-stream chunk"
		publish
	fi
}

# ------------------------------------------------------------- consumers

# Identity of a chunk: a new chunk is a new file, but inode numbers come back
# quickly, hence the change time (nanoseconds) and size as well.
ID_FORMAT='%d:%i:%z:%s'

# Copy the open chunk on fd $1 to stdout.  If the write fails (the reader is
# gone) exit at once: that drops our lock, if any, and leaves F in place for
# another consumer.  cat killed by SIGPIPE is a quiet 141.
emit() {
	run_child cat <&"$1" && return 0
	local rc=$?
	((rc > 128)) || rc=1
	exit "$rc"
}

# Lossy and lock-free: emit F whenever its identity changes.
consume_multicast() {
	local last='' id fd
	while :; do
		if bus_exists && id=$(stat -c "$ID_FORMAT" -- "$F" 2>/dev/null) &&
			[[ $id != "$last" ]] && { exec {fd}<"$F"; } 2>/dev/null; then
			# What we read is the open file, which may be newer than the
			# file we just looked at: remember the identity of that one.
			if id=$(stat -L -c "$ID_FORMAT" "/dev/fd/$fd") && [[ $id != "$last" ]]; then
				emit "$fd"
				log "emitted chunk $id" 2
				last=$id
			fi
			exec {fd}<&-
			continue # check again at once: more may have come meanwhile
		fi
		wait_for_bus
	done
}

# Lossless: take each chunk under the lock and remove it once written out.
consume_back_pressure() {
	local fd
	while :; do
		if bus_exists; then
			lock_bus
			if { exec {fd}<"$F"; } 2>/dev/null; then
				if [[ ! -s /dev/fd/$fd ]]; then
					rm -f -- "$F"
					exec {fd}<&-
					unlock_bus
					log "end of stream"
					exit 0
				fi
				# A chunk we could not write out stays for another consumer.
				emit "$fd"
				rm -f -- "$F"
				exec {fd}<&-
				unlock_bus
				log "consumed a chunk" 2
				continue
			fi
			unlock_bus # another consumer took it before we had the lock
		fi
		wait_for_bus
	done
}

# ------------------------------------------------------------------ main

mode=multicast
((back_pressure)) && mode=back-pressure
log "$command on '$F', $mode mode, block size $block_size, sleep interval ${sleep_interval}s"
case $command in
producer)
	prepare_bus 1
	# Only a back-pressure producer ever waits for the bus.
	((back_pressure)) && start_monitor
	produce
	;;
consumer)
	prepare_bus "$back_pressure"
	start_monitor
	if ((back_pressure)); then consume_back_pressure; else consume_multicast; fi
	;;
esac
exit 0
