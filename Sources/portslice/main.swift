import PortSliceCLI

await PortSliceCommand.runFromCommandLine()
