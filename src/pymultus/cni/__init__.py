"""The CNI protocol library: requests, network configurations, results, invocation, cache, skel."""
