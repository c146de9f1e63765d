"""Tests of listening sessions and streaming quality adaptation."""
