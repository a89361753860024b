"""The operator's memory of the cluster: the profiles and Deployments as the watches last showed them, shared by the controller and the webhook."""
