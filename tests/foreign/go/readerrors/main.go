// Command readerrors reads a job's error queue from Go: for each message it prints the message
// id, the job name and the framework's failure headers, then acks it (the message leaves the
// queue).
//
// Usage: JOBS_AMQP_URL=amqp://... readerrors [-want N] [-timeout D] QUEUE
//
// QUEUE is the error queue, the job's queue with ".err" appended. With -want N it consumes until
// it has read N messages and exits 1 if the timeout passes first; without, it takes what the
// queue holds now (basic.get until empty) and exits. The broker URL comes from the
// environment, not the command line, where its password would show in the process list;
// without JOBS_AMQP_URL it is the local broker as guest.
//
// One line per message, fields separated by spaces, values quoted Go-style when they hold
// spaces, quotes or control characters (a failure reason is text from the worker, and a
// message id is whatever the producer set):
//
//	<message id> type=<job> x-jobs-error-kind=decode x-jobs-queue=... x-jobs-error="..."
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

// failureHeaders are the headers the worker adds to a message it puts in an error queue, in the
// order they are printed (see the wire contract in DESIGN.md and jobs-core's envelope module).
var failureHeaders = []string{
	"x-jobs-error-kind", // handler, fatal, timeout, panic, decode, unknown-job, too-large, delivery-limit
	"x-jobs-attempt",    // the attempt that failed last; missing means 1
	"x-jobs-queue",      // the work queue the job failed on
	"x-jobs-exchange",   // where the job was first published
	"x-jobs-routing-key",
	"x-jobs-failed-at", // Unix seconds
	"x-jobs-host",      // the worker's host
	"x-jobs-error",     // the error chain, at most 4 KiB
}

func main() {
	want := flag.Int("want", 0, "consume until this many messages were read (0: read what the queue holds now)")
	timeout := flag.Duration("timeout", 30*time.Second, "with -want, how long to wait for them")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: readerrors [-want N] [-timeout D] QUEUE")
		os.Exit(2)
	}
	url := os.Getenv("JOBS_AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/%2f"
	}
	if err := run(url, flag.Arg(0), *want, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "readerrors:", err)
		os.Exit(1)
	}
}

func run(url, queue string, want int, timeout time.Duration) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}

	if want == 0 {
		for {
			msg, ok, err := ch.Get(queue, false)
			if err != nil {
				return fmt.Errorf("get from %s: %w", queue, err)
			}
			if !ok {
				return nil
			}
			if err := printAndAck(msg); err != nil {
				return err
			}
		}
	}

	if err := ch.Qos(want, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", queue, err)
	}
	deadline := time.After(timeout)
	for read := 0; read < want; read++ {
		select {
		case msg, open := <-deliveries:
			if !open {
				return fmt.Errorf("the consumer of %s ended after %d of %d messages", queue, read, want)
			}
			if err := printAndAck(msg); err != nil {
				return err
			}
		case <-deadline:
			return fmt.Errorf("read %d of %d messages from %s within %s", read, want, queue, timeout)
		}
	}
	return nil
}

// printAndAck prints one line for msg, then acks it: what was printed is what left the queue.
func printAndAck(msg amqp.Delivery) error {
	line := []string{show(msg.MessageId), "type=" + show(msg.Type)}
	for _, name := range failureHeaders {
		if value, ok := msg.Headers[name]; ok {
			line = append(line, name+"="+show(value))
		}
	}
	fmt.Println(strings.Join(line, " "))
	if err := msg.Ack(false); err != nil {
		return fmt.Errorf("ack %s: %w", msg.MessageId, err)
	}
	return nil
}

// show formats an AMQP field value for one line of output.
func show(value interface{}) string {
	switch v := value.(type) {
	case string:
		return quoteIfNeeded(v)
	case []byte:
		return quoteIfNeeded(string(v))
	case time.Time:
		return strconv.FormatInt(v.Unix(), 10)
	default:
		return quoteIfNeeded(fmt.Sprint(v))
	}
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.IndexFunc(s, func(r rune) bool {
		return r == '"' || r == '\\' || r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
