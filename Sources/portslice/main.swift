import PortSliceCLI

PortSliceCommand.main()
