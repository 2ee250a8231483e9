/*
 * The allocation lifecycle of Gantry, abstracted for spin.
 *
 * One job with one replica ("the task"); NN nodes that each hold the
 * resources of one allocation; at most NA allocations ever created; two
 * servers of which one leads at a time (LEADER_CHANGES hand-overs); agents
 * that pull their allocations, run tasks, report, restart and re-attach;
 * a network that loses (at most MAXLOST), duplicates and reorders the
 * agents' reports. The allocation state machine (which status may follow
 * which) is generated from the Go table: transitions.pml, written by
 * go generate ./internal/lifecycle/... .
 *
 * What each part stands for in the code:
 *   st/an/av, nup, nrev, epoch  the store (internal/state): allocations,
 *                               node status, each node's plan revision,
 *                               the leader's fence
 *   Server                      internal/server: the broker and worker
 *                               (reconcile + schedule on a snapshot, then
 *                               ApplyPlan guarded by the fence and the
 *                               node revisions), the node monitor
 *   Net                         the network, and Store.UpdateAllocsFromClients: merges
 *                               reports, skips those the table refuses
 *   Runner                      internal/agent: sync, allocation runners,
 *                               the updater that coalesces and retries
 *   Env                         users, machines and the network
 *
 * Every run of the model is finite: each process loops only while a
 * bounded budget lasts, and the environment takes every action it still
 * may before a run ends. A run in which the job is never stopped is
 * therefore checked with -DNO_JOB_STOP (no_silent_loss speaks of those).
 *
 * Variants (-D): NO_REVISION_CHECK drops the fence and node-revision
 * compare from plan apply; NO_TABLE_CHECK lets the store apply any
 * report; NO_RETRY makes the agent forget a report the network lost;
 * NO_STOP_ENDED makes the agent leave running a task whose allocation
 * the servers hold as failed.
 * Each must produce a counterexample (see model_test.go).
 */
#include "transitions.pml"

#ifndef NN
#define NN 2            /* nodes */
#endif
#ifndef NA
#define NA 2            /* allocations created, at most */
#endif
#ifndef MAXLOST
#define MAXLOST 2       /* reports lost or duplicated by the network */
#endif
#ifndef LEADER_CHANGES
#define LEADER_CHANGES 1
#endif
#ifndef DISRUPTIONS
#define DISRUPTIONS 1   /* node losses plus job updates */
#endif
#define CAP 1           /* allocations a node's resources hold */
#define NOALLOC 255
#define NONODE 255

#define CTERM(s) (CLI(s) == C_COMPLETE || CLI(s) == C_FAILED || CLI(s) == C_LOST)
/* the servers want it running and it holds its node's resources */
#define WANTED(s) ((s) != 0 && DES(s) == D_RUN && !CTERM(s))

/* ---- the store ---- */
byte st[NA];            /* ST(desired, client); 0: not created */
byte an[NA];            /* its node */
byte av[NA];            /* the job version it runs */
byte nalloc;            /* allocations created */
bool nup[NN];           /* node ready (else down) */
byte nrev[NN];          /* node's plan revision */
byte epoch;             /* leader fence */
byte leader;
byte jobver;            /* 0 before register */
bool jobstop;
bool evalq;             /* an evaluation is waiting */
bool blocked;           /* the last plan could not place */

/* ---- machines and network ---- */
byte rmask[NA];         /* bit n: the allocation's task runs on node n */
bool alive[NN];         /* the machine is up */
byte view[NN * NA];     /* agent n's view of allocation a (0: unknown) */
byte loc[NN * NA];      /* agent n's task of a: 0 none, 1 running, 2 ended */
byte rep[NN * NA];      /* client status last reported (0: none yet) */
byte out[NN * NA];      /* report queued in the updater (0: none) */
byte fl[2];             /* reports in flight: 0 empty, else MSG(node, alloc, client) */

byte deadup;            /* dead machines still marked ready */
byte deaddown;          /* dead machines marked down */
byte lostmsgs;          /* budget used */
byte disrupted;
byte changes;
bool failed_once;
bool restarted_once;

#define V(n, a) view[(n) * NA + (a)]
#define L(n, a) loc[(n) * NA + (a)]
#define R(n, a) rep[(n) * NA + (a)]
#define O(n, a) out[(n) * NA + (a)]

/* Every write of an allocation's state goes through setst: the table
   must allow it (the Go code consults the same table). */
inline setst(a, to) {
	assert(ALLOWED(st[a], to));
	st[a] = to
}

/* ---- properties checked in every state ---- */
/* 1. An allocation's task never runs on a node other than its own (so
      never on two), and the replica never runs on two nodes while the
      servers want both allocations running. */
/* 2. No resource handed out twice: the allocations a node holds for
      wanted work never exceed its capacity. */
#define OWN(a) (rmask[a] == 0 || rmask[a] == (1 << an[a]))
#define TWICE(a, b) ((a) != (b) && rmask[a] != 0 && rmask[b] != 0 && WANTED(st[a]) && WANTED(st[b]))

/* checked after every step of every process (see the trailing check in
   each atomic block) */
hidden byte ck, cb, cn;
inline check() {
	ck = 0;
	do
	:: ck < NA ->
		assert(OWN(ck));
		cb = 0;
		do
		:: cb < NA -> assert(!TWICE(ck, cb) && !(ck != cb && WANTED(st[ck]) && WANTED(st[cb]))); cb++
		:: cb >= NA -> break
		od;
		ck++
	:: ck >= NA -> break
	od;
	cn = 0;
	do
	:: cn < NN ->
		cb = 0; ck = 0;
		do
		:: ck < NA -> if :: WANTED(st[ck]) && an[ck] == cn -> cb++ :: else fi; ck++
		:: ck >= NA -> break
		od;
		assert(cb <= CAP);
		cn++
	:: cn >= NN -> break
	od;
	ck = 0; cb = 0; cn = 0
}

/* ---- the servers ---- */
proctype Server(byte me) {
	byte myepoch, a, n, pn, snaprev, pv, cnt, k, b;
	byte seen[NA];
	byte upd[NA];
	bool place, ok;
end:
	do
	/* the node monitor: a machine whose lease expired is marked down */
	:: atomic {
		leader == me && deadup > 0 ->
		n = 0;
		do
		:: !alive[n] && nup[n] -> nup[n] = false; deadup--; deaddown++; break
		:: else -> n++
		od;
		evalq = true; n = 0;
		check()
	}
	/* an evaluation: reconcile and schedule on a snapshot ... */
	:: atomic {
		leader == me && evalq && jobver > 0 ->
		evalq = false; myepoch = epoch; pv = jobver; place = false;
		a = 0;
		do
		:: a < NA ->
			seen[a] = st[a]; upd[a] = 0;
			if
			:: WANTED(st[a]) ->
				if
				:: jobstop -> upd[a] = ST(D_STOP, CLI(st[a]))
				:: !jobstop && !nup[an[a]] ->
					/* lost only where the table allows it (worker.go) */
					if
					:: SERVER_ALLOWED(st[a], ST(D_STOP, C_LOST)) -> upd[a] = ST(D_STOP, C_LOST)
					:: else -> upd[a] = ST(D_STOP, CLI(st[a]))
					fi
				:: !jobstop && nup[an[a]] && av[a] != pv -> upd[a] = ST(D_STOP, CLI(st[a]))
				:: else -> skip
				fi
			:: else -> skip
			fi;
			a++
		:: a >= NA -> break
		od;
		/* duplicates of the replica: keep the first */
		cnt = 0; a = 0;
		do
		:: a < NA ->
			if
			:: WANTED(st[a]) && upd[a] == 0 ->
				if :: cnt > 0 -> upd[a] = ST(D_STOP, CLI(st[a])) :: else -> cnt++ fi
			:: else
			fi;
			a++
		:: a >= NA -> break
		od;
		/* place when nothing serves the replica and the current version
		   has not been reported failed (replacing failed work is
		   abstracted away: "reported failed" ends the obligation) */
		place = !jobstop && cnt == 0;
		a = 0;
		do
		:: a < NA -> if :: st[a] != 0 && av[a] == pv && CLI(st[a]) == C_FAILED -> place = false :: else fi; a++
		:: a >= NA -> break
		od;
		pn = NONODE;
		if
		:: place && nalloc < NA ->
			/* feasible: ready, with room once this plan's stops count */
			n = 0;
			do
			:: n < NN ->
				b = 0; k = 0;
				do
				:: k < NA -> if :: WANTED(st[k]) && upd[k] == 0 && an[k] == n -> b++ :: else fi; k++
				:: k >= NA -> break
				od;
				if
				:: nup[n] && b < CAP && pn == NONODE -> pn = n
				:: nup[n] && b < CAP -> pn = n   /* any feasible node */
				:: else
				fi;
				n++
			:: n >= NN -> break
			od;
			if :: pn != NONODE -> snaprev = nrev[pn] :: else fi
		:: else
		fi;
		blocked = place && pn == NONODE;
		n = 0; k = 0; b = 0
	}
	/* ... then apply the plan in one guarded transaction (ApplyPlan) */
	atomic {
		ok = true;
#ifndef NO_REVISION_CHECK
		ok = (epoch == myepoch) && (pn == NONODE || nrev[pn] == snaprev);
#endif
		a = 0;
		do
		:: a < NA -> if :: upd[a] != 0 && st[a] != seen[a] -> ok = false :: else fi; a++
		:: a >= NA -> break
		od;
		if
		:: ok ->
			a = 0;
			do
			:: a < NA -> if :: upd[a] != 0 -> setst(a, upd[a]) :: else fi; upd[a] = 0; seen[a] = 0; a++
			:: a >= NA -> break
			od;
			if
			:: pn != NONODE && nalloc < NA ->
				setst(nalloc, ST(D_RUN, C_PENDING));
				an[nalloc] = pn; av[nalloc] = pv; nalloc++;
				nrev[pn]++
			:: else
			fi
		:: else ->
			/* conflict or no longer leader: evaluate again (the new
			   leader evaluates everything anyway) */
			evalq = true;
			a = 0;
			do
			:: a < NA -> upd[a] = 0; seen[a] = 0; a++
			:: a >= NA -> break
			od
		fi;
		a = 0; pn = NONODE; snaprev = 0; pv = 0; myepoch = 0; place = false; ok = false; cnt = 0;
		check()
	}
	od
}

/* ---- the network and the store merging reports (any server) ---- */
/* Reports in flight sit in NET slots; Net delivers any of them first
   (reordering) or loses one (at most MAXLOST in a run). */
#define MSG(n, a, c) (64 * (n) + 8 * ((a) + 1) + (c))
#define MNODE(m) ((m) / 64)
#define MALLOC(m) (((m) % 64) / 8 - 1)
#define MCLI(m) ((m) % 8)

inline deliver(i) {
	n = MNODE(fl[i]); a = MALLOC(fl[i]); c = MCLI(fl[i]); fl[i] = 0;
	if
	:: st[a] == 0 || an[a] != n || CLI(st[a]) == C_LOST -> skip
	:: else ->
		to = ST(DES(st[a]), c);
		if
#ifndef NO_TABLE_CHECK
		:: !AGENT_ALLOWED(st[a], to) -> skip   /* write.go: mergeClientUpdate */
#endif
		:: else ->
			if
			:: !CTERM(st[a]) && CTERM(to) && (DES(st[a]) == D_RUN || blocked) -> evalq = true
			:: else
			fi;
			setst(a, to)
		fi
	fi;
	n = 0; a = 0; c = 0; to = 0;
	check()
}

inline lose(i) {
	lostmsgs++;
	n = MNODE(fl[i]); a = MALLOC(fl[i]);
#ifndef NO_RETRY
	/* the updater saw the request fail: it sends the report again
	   unless a newer one is queued */
	if :: alive[n] && O(n, a) == 0 -> O(n, a) = MCLI(fl[i]) :: else fi;
#endif
	fl[i] = 0;
	n = 0; a = 0
}

active proctype Net() {
	byte n, a, c, to;
end:
	do
	:: atomic { fl[0] != 0 -> deliver(0) }
	:: atomic { fl[1] != 0 -> deliver(1) }
	:: atomic { fl[0] != 0 && lostmsgs < MAXLOST -> lose(0) }
	:: atomic { fl[1] != 0 && lostmsgs < MAXLOST -> lose(1) }
	od
}

/* send a report, or queue it in the updater while the network is full */
inline send(c) {
	if
	:: fl[0] == 0 -> fl[0] = MSG(n, a, c); O(n, a) = 0
	:: fl[0] != 0 && fl[1] == 0 -> fl[1] = MSG(n, a, c); O(n, a) = 0
	:: else -> O(n, a) = c
	fi
}

/* report a status if the table allows it after the last one (allocrunner.go) */
inline report(c) {
	if
	:: R(n, a) == 0 || AGENT_ALLOWED(ST(DES(V(n, a)), R(n, a)), ST(DES(V(n, a)), c)) ->
		R(n, a) = c; send(c)
	:: else
	fi
}

/* ---- the agents: one runner per (node, allocation) ---- */
proctype Runner(byte n; byte a) {
end:
	do
	/* sync: the blocking query brings the server's view of this
	   allocation (views of different allocations arrive in any order,
	   and late), and the runner acts on it */
	:: atomic {
		alive[n] && st[a] != 0 && an[a] == n && V(n, a) != st[a] ->
		V(n, a) = st[a];
		if :: R(n, a) == 0 -> R(n, a) = CLI(st[a]) :: else fi;
		if
		/* start a task the servers want running and this node lacks */
		:: DES(V(n, a)) == D_RUN && !CTERM(V(n, a)) && L(n, a) == 0 ->
			L(n, a) = 1; rmask[a] = rmask[a] | (1 << n);
			report(C_RUNNING)
		/* stop what the servers stopped, marked lost or hold as ended
		   (allocrunner.go: update) */
#ifdef NO_STOP_ENDED
		:: (DES(V(n, a)) == D_STOP || CLI(V(n, a)) == C_LOST) && L(n, a) == 1 ->
#else
		:: (DES(V(n, a)) == D_STOP || CTERM(V(n, a))) && L(n, a) == 1 ->
#endif
			L(n, a) = 2; rmask[a] = rmask[a] & ~(1 << n);
			report(C_COMPLETE)
		/* stopped before it ran here */
		:: DES(V(n, a)) == D_STOP && !CTERM(V(n, a)) && L(n, a) == 0 ->
			L(n, a) = 2;
			report(C_COMPLETE)
		:: else
		fi;
		check()
	}
	/* the task fails for good (once in a run) */
	:: atomic {
		alive[n] && L(n, a) == 1 && !failed_once ->
		failed_once = true; L(n, a) = 2; rmask[a] = rmask[a] & ~(1 << n);
		report(C_FAILED)
	}
	/* the updater sends a queued report */
	:: atomic { alive[n] && O(n, a) != 0 && (fl[0] == 0 || fl[1] == 0) -> send(O(n, a)) }
	od
}

/* ---- users and machines ---- */
/* a live machine at index i or after (NN <= 3) */
#define ALIVE_FROM(i) ((i) < NN && alive[i] || (i) + 1 < NN && alive[(i) + 1] || (i) + 2 < NN && alive[(i) + 2])

proctype Env() {
	byte n, a;
	atomic { jobver = 1; evalq = true }
end:
	do
	/* the job is updated to a new version */
	:: atomic { disrupted < DISRUPTIONS && jobver == 1 && !jobstop -> disrupted++; jobver = 2; evalq = true }
#ifndef NO_JOB_STOP
	/* the job is stopped */
	:: atomic { !jobstop -> jobstop = true; evalq = true }
#endif
	/* the leader changes: the other server leads under a new fence */
	:: atomic { changes < LEADER_CHANGES -> changes++; leader = 1 - leader; epoch++; evalq = true }
	/* a machine dies with its tasks and its agent's memory; its lease
	   runs out later (the node monitor) */
	:: atomic {
		disrupted < DISRUPTIONS && ALIVE_FROM(0) ->
		disrupted++;
		n = 0;
		do
		:: alive[n] -> break              /* this one */
		:: ALIVE_FROM(n + 1) -> n++       /* or a live one further on */
		od;
		alive[n] = false; deadup++;
		a = 0;
		do
		:: a < NA -> rmask[a] = rmask[a] & ~(1 << n); V(n, a) = 0; L(n, a) = 0; R(n, a) = 0; O(n, a) = 0; a++
		:: a >= NA -> break
		od;
		n = 0; a = 0;
		check()
	}
	/* a replacement machine registers in its place */
	:: atomic {
		deaddown > 0 ->
		n = 0;
		do
		:: !alive[n] && !nup[n] -> break
		:: else -> n++
		od;
		alive[n] = true; nup[n] = true; deaddown--; evalq = true; n = 0
	}
	/* an agent restarts: its memory and queued reports are gone, its
	   tasks survive and are re-attached (and reported running) */
	:: atomic {
		!restarted_once ->
		restarted_once = true;
		n = 0;
		do
		:: n < NN - 1 -> n++
		:: break
		od;
		if
		:: alive[n] ->
			a = 0;
			do
			:: a < NA ->
				V(n, a) = 0; R(n, a) = 0; O(n, a) = 0;
				if :: rmask[a] & (1 << n) -> L(n, a) = 1; O(n, a) = C_RUNNING :: else -> L(n, a) = 0 fi;
				a++
			:: a >= NA -> break
			od
		:: else
		fi;
		n = 0; a = 0
	}
	od
}

init {
	byte n;
	atomic {
		n = 0;
		do
		:: n < NN -> alive[n] = true; nup[n] = true; n++
		:: n >= NN -> break
		od;
		run Server(0);
		run Server(1);
		n = 0;
		do
		:: n < NN * NA -> run Runner(n / NA, n % NA); n++
		:: n >= NN * NA -> break
		od;
		run Env();
		skip
	}
}

/* ---- liveness ---- */
#define SERVED(a) (st[a] != 0 && av[a] == jobver && (st[a] == ST(D_RUN, C_RUNNING) || CLI(st[a]) == C_FAILED))
#if NA == 2
#define ANY_SERVED (SERVED(0) || SERVED(1))
#define NOTHING_RUNS (rmask[0] == 0 && rmask[1] == 0)
#elif NA == 3
#define ANY_SERVED (SERVED(0) || SERVED(1) || SERVED(2))
#define NOTHING_RUNS (rmask[0] == 0 && rmask[1] == 0 && rmask[2] == 0)
#endif

/* Every run of the model ends (no cycles: each loop runs on a bounded
   budget), and a run that ends stays in its last state for ever. So the
   two liveness properties below hold exactly when they hold in every
   final state, which Final checks with timeout (true only when nothing
   else can move) - a safety search, far cheaper than the LTL one, and
   independent of fairness. The LTL formulas are kept for the full check
   (pan -a [-f] -N name), which the README gives as a command. */
active proctype Final() {
	timeout ->
	/* 4. a stopped job has nothing running, for good */
	assert(!jobstop || NOTHING_RUNS);
#ifdef NO_JOB_STOP
	/* 3. no silent loss, over the runs in which the job is never stopped */
	assert(ANY_SERVED)
#endif
}

/* 3. No silent loss: a registered job that is not stopped eventually
      has an allocation of its current version running or reported
      failed. */
ltl no_silent_loss { [] ((jobver > 0 && !jobstop) -> <> (jobstop || ANY_SERVED)) }
/* 4. A stopped job eventually has nothing running, for good. */
ltl stop_clears { [] (jobstop -> <> [] NOTHING_RUNS) }
