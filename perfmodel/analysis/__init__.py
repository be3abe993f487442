"""What a user asks for, built on a Scenario: predict, simulate, plan, compare, Pareto fronts, reports and plots."""
