// The testbed's pod sandbox ("pause") program: readiness-testbed/pause:dev.
module readiness-operator/testbed/images/pause

go 1.24.0
