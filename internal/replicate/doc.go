// Package replicate speaks Replicate's HTTP API: the training object, the
// webhook signature scheme (Standard Webhooks), and the API client.
package replicate
