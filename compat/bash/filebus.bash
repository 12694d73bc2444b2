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

# Left unset until the command line sets them; the environment fills in
# the rest afterwards, so a bad variable cannot break an explicit option.
unset filename back_pressure block_size_arg sleep_interval monitoring
verbose=0
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
	-*)
		[[ $opt =~ ^-v+$ ]] || usage_error "unknown option '$arg'"
		((verbose += ${#opt} - 1))
		;;
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
if ((verbose == 0)); then
	case ${FILEBUS_VERBOSE-} in
	'' | *[!0-9]*) parse_bool FILEBUS_VERBOSE "${FILEBUS_VERBOSE-}" && verbose=$REPLY ;;
	*) verbose=$((10#$FILEBUS_VERBOSE)) ;;
	esac
fi

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
#
# No $(...), <(...) or >(...) below: bash 5.2 parses their text when it
# expands them, and a trapped signal that arrives meanwhile runs its trap
# inside the parser, which fails with a syntax error: the signal is lost and
# `kill` does not stop us.  Output of commands comes back through a pipe or
# a file of our own instead (see make_private_files).

helper_pid=''  # a child we wait for (flock, cat): killed if we are
ino_pid=''     # inotifywait
ino_fd=''      # its events, one file name a line
sleep_fd=''    # a pipe that never has data: read -t on it is a sleep
io_fd=''       # a pipe for the output of stat and mkdir
spool_fd=''    # a private regular file for the producer's input
private=''     # the directory that held those until they were open
lock_fd=''
staging=0 # 1 while we hold the lock and F.__new__ may be half written

# shellcheck disable=SC2317 # only called from traps
cleanup() {
	local pid
	for pid in $helper_pid $ino_pid; do
		# Reaped too, so that no zombie outlives us.
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	if ((staging)); then rm -f -- "$stage"; fi
	if [[ -n $private ]]; then rm -rf -- "$private"; fi
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
	helper_pid=''
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

# stat of $2 in format $1 into REPLY; fails if $2 cannot be stat'ed.
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
	inotifywait -m -e create,moved_to,delete,moved_from,close_write --format %f -- "$dir" \
		</dev/null >"$private/events" 2>&1 &
	ino_pid=$!
	# Until the watch is in place events would be lost, so wait for it
	# before the first check of the bus.
	# We hold a write end of its FIFO too, so its death shows as silence,
	# not as end of file.
	local line='' tries=0
	while ((tries++ < 100)); do
		if IFS= read -r -t 0.1 -u "$ino_fd" line; then
			case $line in
			'Watches established.')
				log "watching $dir with inotifywait (pid $ino_pid)"
				return 0
				;;
			'Setting up watches.') ;;
			*) break ;;
			esac
		else
			line=''
			kill -0 "$ino_pid" 2>/dev/null || break
		fi
	done
	log "inotifywait failed (${line:-no answer}), polling every ${sleep_interval}s"
	kill "$ino_pid" 2>/dev/null && wait "$ino_pid" 2>/dev/null
	exec {ino_fd}<&-
	ino_fd='' ino_pid=''
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
		IFS= read -r -t "$t" -u "$ino_fd" line || return 0 # timed out
		[[ $line == "$base" ]] && break # else another file in the directory
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
		if ! mkdir -p -- "$dir" 2>&"$io_fd"; then
			local err=''
			IFS= read -r -t 1 -u "$io_fd" err
			die "cannot use '$F': cannot create directory '$dir': ${err##*: }"
		fi
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
	lock_fd=''
}

bus_exists() { [[ -e $F || -L $F ]]; }

# ------------------------------------------------------------- producer

# The one way any chunk, the empty end-of-stream one included, gets out.
publish() { # bytes
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
		{ printf '%s' "$1" >"$stage"; } 2>/dev/null || die "cannot write '$stage'"
		mv -f -- "$stage" "$F" || die "cannot rename '$stage' to '$F'"
		staging=0
		unlock_bus
		break
	done
	active
	log "published ${#1} bytes" 2
}

buf=''     # input not published yet; may end in an incomplete line
deadline=0 # when the oldest complete line in buf is due, microseconds

# Chunks hold whole lines.  The exception is a line longer than --block-size:
# it is split into --block-size pieces (the first starts a chunk), so that no
# chunk is ever larger than --block-size (PROTOCOL.md: "at most").
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
	local c rc remaining t data parts
	while :; do
		flush 0
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
		# A read that timed out may still have taken a byte.  c is empty for
		# a NUL byte, which bash cannot hold.
		[[ -n $buf ]] || deadline=$((${EPOCHREALTIME/./} + sleep_us))
		buf+=$c
		if { ((rc == 0)) || [[ -n $c ]]; } && read -r -t 0; then
			# Opening /dev/fd/N opens the spool file afresh: truncated for
			# dd, from its start for mapfile.
			dd bs=65536 count=1 status=none >"/dev/fd/$spool_fd" ||
				die "cannot read standard input"
			# NUL bytes split the input into several parts; they are dropped.
			mapfile -d '' -t parts <"/dev/fd/$spool_fd"
			printf -v data '%s' "${parts[@]}"
			buf+=$data
		fi
		((rc > 128)) && continue # timed out: time to flush
		((rc == 0)) || break     # end of input
	done
	flush 1
	if ((back_pressure)); then
		log "end of input, publishing the end-of-stream chunk"
		publish ''
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

# Lossy and lock-free: emit F whenever its identity changes.  The identity
# of the open file is what we remember, since the bytes come from it.  Only
# a path that looks new is opened: fstat of a chunk that is replaced right
# after the open shows a new change time (its link count dropped) and would
# make it look new once more.
consume_multicast() {
	local last='' fd
	while :; do
		# -f: never open (and hang on) a FIFO that replaced the bus.
		if [[ -f $F ]] && stat_to_reply "$ID_FORMAT" "$F" && [[ $REPLY != "$last" ]] &&
			{ exec {fd}<"$F"; } 2>/dev/null; then
			if stat_to_reply "$ID_FORMAT" "/dev/fd/$fd" && [[ $REPLY != "$last" ]]; then
				last=$REPLY
				emit "$fd"
				log "emitted chunk $last" 2
			fi
			exec {fd}<&-
		fi # else no new chunk, or a back-pressure consumer just took it
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
				active
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
