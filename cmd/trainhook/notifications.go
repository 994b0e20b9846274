package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trainhook/trainhook/internal/apiclient"
)

func runNotifications(ctx context.Context, args []string, e env) int {
	if len(args) > 0 && (args[0] == "resend" || args[0] == "show") {
		return runNotificationOne(ctx, args[0], args[1:], e)
	}
	fs := newFlagSet("notifications", e)
	server := serverFlag(fs, e)
	status := fs.String("status", "", "only notifications in this `status`: pending, delivered or failed")
	model := fs.String("model", "", "only notifications about the model with this `ID`")
	limit := fs.Int("limit", 100, "at most `n`, 1 to 1000")
	asJSON := fs.Bool("json", false, `print them as JSON: [{"id": 1, "event_id": "evt_...", ...}]`)
	fs.Usage = usageFunc(fs, e, "notifications [flags]\n       trainhook notifications show ID\n       trainhook notifications resend ID", `
Lists the notifications sent to your app (TRAINHOOK_NOTIFY_URL), newest
first: id, event, model, URL, status, attempts and the last error.
'show ID' prints one with every attempt; 'resend ID' sends it again with
the same webhook-id (your app dedupes on it) and a new retry window.`)
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(e.stderr, "notifications: unexpected argument %q: did you mean 'trainhook notifications show %s'?\n", args[0], args[0])
		return exitUsage
	}
	if _, code, ok := parseFlags(fs, args, e, 0, ""); !ok {
		return code
	}
	switch *status {
	case "", "pending", "delivered", "failed":
	default:
		fmt.Fprintf(e.stderr, "notifications: --status must be pending, delivered or failed, got %q\n", *status)
		return exitUsage
	}
	if *limit < 1 || *limit > 1000 {
		fmt.Fprintf(e.stderr, "notifications: --limit must be between 1 and 1000, got %d\n", *limit)
		return exitUsage
	}
	c, ok := newClient(e, "notifications", *server)
	if !ok {
		return exitUsage
	}
	ns, err := c.Notifications(ctx, apiclient.NotificationOptions{Status: *status, ModelID: *model, Limit: *limit})
	if err != nil {
		fmt.Fprintf(e.stderr, "notifications: %s\n", explain(err, c, ""))
		return exitFailed
	}
	if *asJSON {
		writeJSON(e.stdout, ns)
		return exitOK
	}
	if len(ns) == 0 {
		fmt.Fprintln(e.stdout, "No notifications. They are written when a model changes status and TRAINHOOK_NOTIFY_URL is set.")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tMODEL\tSTATUS\tATTEMPTS\tURL\tLAST ERROR")
	for _, n := range ns {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", n.ID, n.Type, n.ModelID, n.Status, n.Attempts, n.URL, orDash(n.LastError))
	}
	_ = tw.Flush()
	return exitOK
}

func runNotificationOne(ctx context.Context, verb string, args []string, e env) int {
	fs := newFlagSet("notifications "+verb, e)
	server := serverFlag(fs, e)
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	fs.Usage = usageFunc(fs, e, "notifications "+verb+" ID [flags]", map[string]string{
		"show":   "Prints one notification with every attempt to send it.",
		"resend": "Sends a notification again, with the same webhook-id and a new retry window.",
	}[verb])
	pos, code, ok := parseFlags(fs, args, e, 1, "the notification ID")
	if !ok {
		return code
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id < 1 {
		fmt.Fprintf(e.stderr, "notifications %s: %q is not a notification id (a positive integer; list them with `trainhook notifications`)\n", verb, pos[0])
		return exitUsage
	}
	c, ok := newClient(e, "notifications", *server)
	if !ok {
		return exitUsage
	}
	if verb == "resend" {
		n, err := c.ResendNotification(ctx, id)
		if err != nil {
			fmt.Fprintf(e.stderr, "notifications resend: %s\n", explainNotification(err, c, id))
			return exitFailed
		}
		if *asJSON {
			writeJSON(e.stdout, n)
			return exitOK
		}
		fmt.Fprintf(e.stdout, "Notification %d (%s, webhook-id %s) will be sent again to %s.\n", n.ID, n.Type, n.EventID, n.URL)
		return exitOK
	}
	d, err := c.Notification(ctx, id)
	if err != nil {
		fmt.Fprintf(e.stderr, "notifications show: %s\n", explainNotification(err, c, id))
		return exitFailed
	}
	if *asJSON {
		writeJSON(e.stdout, d)
		return exitOK
	}
	fmt.Fprintf(e.stdout, "Notification %d: %s of model %s (sequence %d)\n  webhook-id  %s\n  url         %s\n  status      %s after %d attempt(s)\n",
		d.ID, d.Type, d.ModelID, d.Sequence, d.EventID, d.URL, d.Status, d.Attempts)
	for _, a := range d.AttemptLog {
		res := "no answer"
		if a.StatusCode != 0 {
			res = "HTTP " + strconv.Itoa(a.StatusCode)
		}
		fmt.Fprintf(e.stdout, "  %s  %-10s %6s  %s\n", a.At.Local().Format(time.DateTime), res, a.Latency.Round(time.Millisecond), a.Error)
	}
	return exitOK
}

func explainNotification(err error, c *apiclient.Client, id int64) string {
	if apiclient.IsNotFound(err) {
		return fmt.Sprintf("no notification with id %d on %s: list them with `trainhook notifications`", id, c.BaseURL())
	}
	return explain(err, c, "")
}
